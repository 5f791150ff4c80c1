"""DenseNet-121/161/169/201 (Huang et al. 2017) with torchvision's names.

Each dense layer reads the concatenation of all earlier feature maps of its block:
BN-ReLU-conv1x1 (bottleneck to 4 x growth) then BN-ReLU-conv3x3 (growth channels);
transitions halve channels (1x1 conv) and resolution (2x2 average pool).
"""

from ._core import register

_CFGS = {"densenet121": (32, (6, 12, 24, 16), 64), "densenet161": (48, (6, 12, 36, 24), 96),
         "densenet169": (32, (6, 12, 32, 32), 64), "densenet201": (32, (6, 12, 48, 32), 64)}


def _densenet(net, growth, blocks, init, bn_size=4):
    x = net.input(3)
    x = net.conv(x, "features.conv0", init, 7, 2, 3, bias=False)
    x = net.relu(net.bn(x, "features.norm0"), "features.relu0")
    x = net.max_pool(x, "features.pool0", 3, 2, 1)
    for i, n in enumerate(blocks, start=1):
        feats = [x]
        for j in range(1, n + 1):
            p = f"features.denseblock{i}.denselayer{j}"
            y = net.cat(feats, f"{p}.cat") if len(feats) > 1 else feats[0]
            y = net.relu(net.bn(y, f"{p}.norm1"), f"{p}.relu1")
            y = net.conv(y, f"{p}.conv1", bn_size * growth, 1, bias=False)
            y = net.relu(net.bn(y, f"{p}.norm2"), f"{p}.relu2")
            feats.append(net.conv(y, f"{p}.conv2", growth, 3, padding=1, bias=False))
        x = net.cat(feats, f"features.denseblock{i}.cat")
        if i != len(blocks):
            p = f"features.transition{i}"
            x = net.relu(net.bn(x, f"{p}.norm"), f"{p}.relu")
            x = net.conv(x, f"{p}.conv", x.shape[1] // 2, 1, bias=False)
            x = net.avg_pool(x, f"{p}.pool", 2, 2)
    x = net.relu(net.bn(x, "features.norm5"), "relu")
    x = net.flatten(net.adaptive_avg_pool(x, "adaptive_avg_pool2d", 1))
    return net.linear(x, "classifier", net.num_classes)


for _name, (_g, _b, _i) in _CFGS.items():
    register(_name, input_size=(3, 224, 224), head="classifier.weight", embedding="flatten",
             description=f"DenseNet-{_name[8:]} (torchvision names; inputs >= 32x32)")(
        (lambda g, b, i: lambda net: _densenet(net, g, b, i))(_g, _b, _i))
