"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016) with torchvision's names.

Fire modules: 1x1 squeeze, then 1x1 and 3x3 expands concatenated; the classifier is a
1x1 conv to the classes, ReLU and global average pooling (no fully connected layer).
"""

from ._core import register

_FIRES = {  # features index -> (squeeze, expand1x1, expand3x3); "M" = 3x3/2 ceil max pool
    "1_0": [(96, 7, 2), "M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M",
            (32, 128, 128), (48, 192, 192), (48, 192, 192), (64, 256, 256), "M", (64, 256, 256)],
    "1_1": [(64, 3, 2), "M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128),
            "M", (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)],
}


def _fire(net, x, p, squeeze, e1, e3):
    s = net.relu(net.conv(x, f"{p}.squeeze", squeeze, 1), f"{p}.squeeze_activation")
    a = net.relu(net.conv(s, f"{p}.expand1x1", e1, 1), f"{p}.expand1x1_activation")
    b = net.relu(net.conv(s, f"{p}.expand3x3", e3, 3, padding=1), f"{p}.expand3x3_activation")
    return net.cat([a, b], f"{p}.cat")


def _squeezenet(net, version):
    cfg = _FIRES[version]
    x = net.input(3)
    out, k, s = cfg[0]
    x = net.relu(net.conv(x, "features.0", out, k, s), "features.1")
    for i, v in enumerate(cfg[1:], start=2):
        if v == "M":
            x = net.max_pool(x, f"features.{i}", 3, 2, ceil_mode=True)
        else:
            x = _fire(net, x, f"features.{i}", *v)
    x = net.dropout(x, "classifier.0", 0.5)
    x = net.relu(net.conv(x, "classifier.1", net.num_classes, 1), "classifier.2")
    return net.flatten(net.adaptive_avg_pool(x, "classifier.3", 1))


for _v in _FIRES:
    register(f"squeezenet{_v}", input_size=(3, 224, 224), head="classifier.1.weight",
             embedding=f"features.{len(_FIRES[_v])}.cat",
             description=f"SqueezeNet {_v.replace('_', '.')} (torchvision names; inputs "
                         f">= 64x64)")((lambda v: lambda net: _squeezenet(net, v))(_v))
