"""Dense prediction: FCN-ResNet50, U-Net, the dilated-convolution context network.

All three are fully convolutional and keep the input's resolution in their output
``"out"`` of shape (N, classes, H, W) (per-pixel class scores; apply softmax over dim 1
for probabilities).
"""

from ._core import register
from .resnet import body


@register("fcn_resnet50", input_size=(3, 520, 520), num_classes=21, output="out",
          head="classifier.4.weight", embedding="backbone.layer4.2.relu_2",
          ignore_prefixes=("aux_classifier.",),
          description="FCN (Long et al. 2015) on a ResNet-50 backbone as in torchvision: "
                      "layer3/4 dilated (output stride 8), FCNHead, bilinear upsampling to the "
                      "input size; the training-only aux head is left out")
def fcn_resnet50(net):
    x = net.input(3)
    h, w = x.shape[2:]
    y = body(net, x, "bottleneck", (3, 4, 6, 3), prefix="backbone.",
             replace_stride_with_dilation=(False, True, True))
    y = net.conv(y, "classifier.0", 512, 3, padding=1, bias=False)
    y = net.relu(net.bn(y, "classifier.1"), "classifier.2")
    y = net.dropout(y, "classifier.3", 0.1)
    y = net.conv(y, "classifier.4", net.num_classes, 1)
    return net.b.interpolate(y, size=(h, w), mode="bilinear", align_corners=False,
                             name=net.name("interpolate"))


def _double_conv(net, x, path, out, batch_norm):
    for i in (1, 2):
        x = net.conv(x, f"{path}.conv{i}", out, 3, padding=1, bias=not batch_norm)
        if batch_norm:
            x = net.bn(x, f"{path}.bn{i}")
        x = net.relu(x, f"{path}.relu{i}")
    return x


@register("unet", input_size=(1, 256, 256), num_classes=2, output="out", size_multiple=16,
          head="head.weight", embedding="bottleneck.relu2", preprocessing=None,
          options={"in_channels": 1, "base": 64, "batch_norm": False},
          description="U-Net (Ronneberger et al. 2015): 4 stages of two 3x3 convs (padding 1, "
                      "so the output has the input's size) and 2x2 max pooling, transposed-conv "
                      "2x2/2 upsampling, skip concatenation, 1x1 conv to the classes")
def unet(net, in_channels=1, base=64, batch_norm=False):
    x = net.input(in_channels)
    skips = []
    for i in range(1, 5):
        x = _double_conv(net, x, f"enc{i}", base * 2 ** (i - 1), batch_norm)
        skips.append(x)
        x = net.max_pool(x, f"pool{i}", 2, 2)
    x = _double_conv(net, x, "bottleneck", base * 16, batch_norm)
    for i in range(4, 0, -1):
        c = base * 2 ** (i - 1)
        x = net.conv_transpose(x, f"up{i}", c, 2, stride=2)
        x = net.cat([skips[i - 1], x], f"cat{i}")
        x = _double_conv(net, x, f"dec{i}", c, batch_norm)
    return net.conv(x, "head", net.num_classes, 1)


_DILATIONS = (1, 1, 2, 4, 8, 16, 1)


@register("context_net", input_size=(21, 64, 64), num_classes=21, output="out",
          head="14.weight", preprocessing=None,
          description="Context module of Yu & Koltun 2016 (basic): C-channel 3x3 convs with "
                      "dilations 1, 1, 2, 4, 8, 16, 1 (padding = dilation) and ReLU, then a 1x1 "
                      "conv; receptive field 67; C = num_classes, input and output are C score "
                      "maps of any size")
def context_net(net):
    c = net.num_classes
    x = net.input(c)
    for i, d in enumerate(_DILATIONS):
        x = net.relu(net.conv(x, str(2 * i), c, 3, padding=d, dilation=d), str(2 * i + 1))
    return net.conv(x, str(2 * len(_DILATIONS)), c, 1)
