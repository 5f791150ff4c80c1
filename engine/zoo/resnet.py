"""ResNet-18/34/50/101/152 (He et al. 2015), ResNeXt-50 32x4d, SE-ResNet-50.

torchvision's ResNet v1.5 (stride on the 3x3 conv of the bottleneck) and its names.
SE-ResNet-50 (Hu et al. 2017) adds squeeze-and-excitation after ``bn3`` of every
bottleneck, before the residual addition, with timm's names (``layerX.Y.se.fc1`` /
``se.fc2``: 1x1 convs with bias, reduction 16).  ``body`` is shared with FCN.
"""

from ._core import register

_EXP = {"basic": 1, "bottleneck": 4}


def _basic_block(net, x, path, planes, stride, dilation, groups, width_per_group, se):
    if dilation > 1 or groups != 1 or width_per_group != 64:
        raise ValueError("BasicBlock supports only groups=1, width 64, dilation 1 (as torchvision)")
    identity = x
    out = net.relu(net.bn(net.conv(x, f"{path}.conv1", planes, 3, stride, 1, bias=False),
                          f"{path}.bn1"), f"{path}.relu")
    out = net.bn(net.conv(out, f"{path}.conv2", planes, 3, 1, 1, bias=False), f"{path}.bn2",
                 gain=0.2)
    if stride != 1 or x.shape[1] != planes:
        identity = _downsample(net, x, path, planes, stride)
    return net.relu(net.add(out, identity, f"{path}.add"), f"{path}.relu")


def _bottleneck(net, x, path, planes, stride, dilation, groups, width_per_group, se):
    width = int(planes * (width_per_group / 64.0)) * groups
    out = net.relu(net.bn(net.conv(x, f"{path}.conv1", width, 1, bias=False), f"{path}.bn1"),
                   f"{path}.relu")
    out = net.conv(out, f"{path}.conv2", width, 3, stride, padding=dilation, dilation=dilation,
                   groups=groups, bias=False)
    out = net.relu(net.bn(out, f"{path}.bn2"), f"{path}.relu")
    out = net.bn(net.conv(out, f"{path}.conv3", planes * 4, 1, bias=False), f"{path}.bn3",
                 gain=0.2)
    if se:
        out = _squeeze_excite(net, out, f"{path}.se")
    identity = x
    if stride != 1 or x.shape[1] != planes * 4:
        identity = _downsample(net, x, path, planes * 4, stride)
    return net.relu(net.add(out, identity, f"{path}.add"), f"{path}.relu")


def _downsample(net, x, path, out, stride):
    return net.bn(net.conv(x, f"{path}.downsample.0", out, 1, stride, bias=False),
                  f"{path}.downsample.1")


def _squeeze_excite(net, x, path, reduction=16):
    c = x.shape[1]
    s = net.b.global_avg_pool(x, name=net.name(f"{path}.mean"))
    s = net.relu(net.conv(s, f"{path}.fc1", c // reduction, 1), f"{path}.act")
    s = net.sigmoid(net.conv(s, f"{path}.fc2", c, 1), f"{path}.gate")
    return net.mul(x, s, f"{path}.mul")


def body(net, x, block, layers, prefix="", groups=1, width_per_group=64,
         replace_stride_with_dilation=(False, False, False), se=False):
    """Stem and layer1-4 of torchvision's ResNet; returns layer4's output."""
    p = prefix
    blk = {"basic": _basic_block, "bottleneck": _bottleneck}[block]
    x = net.conv(x, f"{p}conv1", 64, 7, 2, 3, bias=False)
    x = net.relu(net.bn(x, f"{p}bn1"), f"{p}relu")
    x = net.max_pool(x, f"{p}maxpool", 3, 2, 1)
    dilation = 1
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
        stride = 1 if i == 0 else 2
        previous = dilation
        if i > 0 and replace_stride_with_dilation[i - 1]:
            dilation *= stride
            stride = 1
        for j in range(n):
            x = blk(net, x, f"{p}layer{i + 1}.{j}", planes, stride if j == 0 else 1,
                    previous if j == 0 else dilation, groups, width_per_group, se)
    return x


def _resnet(net, block, layers, **kw):
    x = body(net, net.input(3), block, layers, **kw)
    x = net.flatten(net.adaptive_avg_pool(x, "avgpool", 1))
    return net.linear(x, "fc", net.num_classes)


def _reg(name, block, layers, description, **kw):
    register(name, input_size=(3, 224, 224), head="fc.weight", embedding="flatten",
             description=description + " (torchvision names; inputs >= 32x32)")(
        lambda net: _resnet(net, block, layers, **kw))


_reg("resnet18", "basic", (2, 2, 2, 2), "ResNet-18")
_reg("resnet34", "basic", (3, 4, 6, 3), "ResNet-34")
_reg("resnet50", "bottleneck", (3, 4, 6, 3), "ResNet-50 (v1.5)")
_reg("resnet101", "bottleneck", (3, 4, 23, 3), "ResNet-101 (v1.5)")
_reg("resnet152", "bottleneck", (3, 8, 36, 3), "ResNet-152 (v1.5)")
_reg("resnext50_32x4d", "bottleneck", (3, 4, 6, 3), "ResNeXt-50 32x4d (grouped 3x3, 32 groups)",
     groups=32, width_per_group=4)
register("se_resnet50", input_size=(3, 224, 224), head="fc.weight", embedding="flatten",
         description="SE-ResNet-50: ResNet-50 with squeeze-and-excitation (reduction 16) after "
                     "bn3 of every bottleneck (timm's names; inputs >= 32x32)")(
    lambda net: _resnet(net, "bottleneck", (3, 4, 6, 3), se=True))
