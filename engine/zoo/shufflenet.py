"""ShuffleNet v2 (Ma et al. 2018) with torchvision's names.

Stride-1 units split the channels in two halves, transform the second and concatenate;
stride-2 units run both branches on the whole input; every unit ends with a channel
shuffle of 2 groups.
"""

from ._core import register

_WIDTHS = {"x0_5": [24, 48, 96, 192, 1024], "x1_0": [24, 116, 232, 464, 1024],
           "x1_5": [24, 176, 352, 704, 1024], "x2_0": [24, 244, 488, 976, 2048]}


def _unit(net, x, path, out, stride):
    bf = out // 2
    if stride == 1:
        x1, x2 = net.b.split(x, x.shape[1] // 2, dim=1, name=net.name(f"{path}.chunk"))
    else:
        x1 = net.conv(x, f"{path}.branch1.0", x.shape[1], 3, stride, 1, groups=x.shape[1],
                      bias=False, gain=0.7)
        x1 = net.conv(net.bn(x1, f"{path}.branch1.1"), f"{path}.branch1.2", bf, 1, bias=False)
        x1 = net.relu(net.bn(x1, f"{path}.branch1.3"), f"{path}.branch1.4")
        x2 = x
    p = f"{path}.branch2"
    y = net.relu(net.bn(net.conv(x2, f"{p}.0", bf, 1, bias=False), f"{p}.1"), f"{p}.2")
    y = net.bn(net.conv(y, f"{p}.3", bf, 3, stride, 1, groups=bf, bias=False, gain=0.7), f"{p}.4")
    y = net.relu(net.bn(net.conv(y, f"{p}.5", bf, 1, bias=False), f"{p}.6"), f"{p}.7")
    y = net.cat([x1, y], f"{path}.cat")
    return net.b.channel_shuffle(y, 2, name=net.name(f"{path}.channel_shuffle"))


def _shufflenet(net, width):
    ch = _WIDTHS[width]
    x = net.input(3)
    x = net.conv(x, "conv1.0", ch[0], 3, 2, 1, bias=False)
    x = net.relu(net.bn(x, "conv1.1"), "conv1.2")
    x = net.max_pool(x, "maxpool", 3, 2, 1)
    for s, (repeats, out) in enumerate(zip((4, 8, 4), ch[1:4]), start=2):
        for j in range(repeats):
            x = _unit(net, x, f"stage{s}.{j}", out, 2 if j == 0 else 1)
    x = net.conv(x, "conv5.0", ch[4], 1, bias=False)
    x = net.relu(net.bn(x, "conv5.1"), "conv5.2")
    x = net.b.mean(x, [2, 3], name=net.name("mean"))
    return net.linear(x, "fc", net.num_classes)


for _w in _WIDTHS:
    register(f"shufflenet_v2_{_w}", input_size=(3, 224, 224), head="fc.weight", embedding="mean",
             description=f"ShuffleNet v2 {_w.replace('_', '.')} (torchvision names; inputs "
                         f">= 32x32)")((lambda w: lambda net: _shufflenet(net, w))(_w))
