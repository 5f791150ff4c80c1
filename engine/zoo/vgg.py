"""VGG configurations A, A-LRN, B, C, D, E (Simonyan & Zisserman 2014), torchvision layout.

``features.N`` counts the modules of torchvision's ``features`` Sequential (conv, [bn],
relu, ..., "M" = 2x2 max pool); A-LRN inserts a LocalResponseNorm after the first ReLU and
C uses 1x1 convolutions as the last conv of stages 3-5 ("1" below).
"""

from ._core import register

_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, "1:256", "M", 512, 512, "1:512", "M",
          512, 512, "1:512", "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def _vgg(net, cfg, batch_norm):
    x = net.input(3)
    i = 0
    for v in _CFGS[cfg]:
        if v == "M":
            x = net.max_pool(x, f"features.{i}", 2, 2)
            i += 1
        elif v == "LRN":
            x = net.lrn(x, f"features.{i}", size=5, alpha=1e-4, beta=0.75, k=2.0)
            i += 1
        else:
            k, c = (1, int(v[2:])) if isinstance(v, str) else (3, v)
            x = net.conv(x, f"features.{i}", c, k, padding=k // 2)
            i += 1
            if batch_norm:
                x = net.bn(x, f"features.{i}")
                i += 1
            x = net.relu(x, f"features.{i}")
            i += 1
    x = net.flatten(net.adaptive_avg_pool(x, "avgpool", 7))
    x = net.relu(net.linear(x, "classifier.0", 4096), "classifier.1")
    x = net.dropout(x, "classifier.2", 0.5)
    x = net.relu(net.linear(x, "classifier.3", 4096), "classifier.4")
    x = net.dropout(x, "classifier.5", 0.5)
    return net.linear(x, "classifier.6", net.num_classes)


def _reg(name, cfg, batch_norm, what):
    bn = " with BatchNorm" if batch_norm else ""
    register(name, input_size=(3, 224, 224), head="classifier.6.weight",
             embedding="classifier.4",
             description=f"VGG {what}, configuration {cfg}{bn} (torchvision layout; "
                         f"inputs >= 32x32)")(lambda net: _vgg(net, cfg, batch_norm))


_reg("vgg11", "A", False, "11 layers")
_reg("vgg11_lrn", "A-LRN", False, "11 layers with LRN after conv1")
_reg("vgg13", "B", False, "13 layers")
_reg("vgg16_c", "C", False, "16 layers with 1x1 convs")
_reg("vgg16", "D", False, "16 layers")
_reg("vgg19", "E", False, "19 layers")
_reg("vgg11_bn", "A", True, "11 layers")
_reg("vgg13_bn", "B", True, "13 layers")
_reg("vgg16_bn", "D", True, "16 layers")
_reg("vgg19_bn", "E", True, "19 layers")
