"""GoogLeNet / Inception v1 (Szegedy et al. 2014) with torchvision's names, no aux heads.

torchvision's version: every conv is ``BasicConv2d`` = conv (no bias) + BatchNorm
(eps=0.001) + ReLU; the "5x5" branch uses a 3x3 kernel (kept by torchvision for
compatibility with its weights); pools use ceil_mode.  ``transform_input=True`` (what
torchvision's pretrained weights use) re-normalises ImageNet-normalised input to the
(x - 0.5) / 0.5 scaling the original weights were trained on.
"""

import numpy as np

from ._core import register

_INCEPTION = {  # in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


def _basic(net, x, path, out, k, stride=1, padding=0):
    x = net.conv(x, f"{path}.conv", out, k, stride=stride, padding=padding, bias=False)
    return net.relu(net.bn(x, f"{path}.bn", eps=1e-3), f"{path}.relu")


def _inception(net, x, path):
    _, c1, c3r, c3, c5r, c5, pp = _INCEPTION[path]
    b1 = _basic(net, x, f"{path}.branch1", c1, 1)
    b2 = _basic(net, _basic(net, x, f"{path}.branch2.0", c3r, 1), f"{path}.branch2.1", c3, 3,
                padding=1)
    b3 = _basic(net, _basic(net, x, f"{path}.branch3.0", c5r, 1), f"{path}.branch3.1", c5, 3,
                padding=1)
    b4 = net.max_pool(x, f"{path}.branch4.0", 3, 1, 1, ceil_mode=True)
    b4 = _basic(net, b4, f"{path}.branch4.1", pp, 1)
    return net.cat([b1, b2, b3, b4], f"{path}.cat")


@register("googlenet", input_size=(3, 224, 224), head="fc.weight", embedding="flatten",
          ignore_prefixes=("aux1.", "aux2."), options={"transform_input": False},
          description="GoogLeNet (Inception v1) as in torchvision, without the auxiliary "
                      "classifiers (inputs >= 32x32)")
def googlenet(net, transform_input=False):
    x = net.input(3)
    if transform_input:
        scale = (np.array([0.229, 0.224, 0.225]) / 0.5).astype(np.float32)
        shift = (np.array([0.485, 0.456, 0.406]) - 0.5) / 0.5
        x = net.b.mul(x, net.b.constant(scale.reshape(1, 3, 1, 1), "transform_input.scale"),
                      name=net.name("transform_input.mul"))
        x = net.b.add(x, net.b.constant(shift.astype(np.float32).reshape(1, 3, 1, 1),
                                        "transform_input.shift"),
                      name=net.name("transform_input.add"))
    x = _basic(net, x, "conv1", 64, 7, stride=2, padding=3)
    x = net.max_pool(x, "maxpool1", 3, 2, ceil_mode=True)
    x = _basic(net, x, "conv2", 64, 1)
    x = _basic(net, x, "conv3", 192, 3, padding=1)
    x = net.max_pool(x, "maxpool2", 3, 2, ceil_mode=True)
    x = _inception(net, _inception(net, x, "inception3a"), "inception3b")
    x = net.max_pool(x, "maxpool3", 3, 2, ceil_mode=True)
    for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
        x = _inception(net, x, name)
    x = net.max_pool(x, "maxpool4", 2, 2, ceil_mode=True)
    x = _inception(net, _inception(net, x, "inception5a"), "inception5b")
    x = net.flatten(net.adaptive_avg_pool(x, "avgpool", 1))
    x = net.dropout(x, "dropout", 0.2)
    return net.linear(x, "fc", net.num_classes)
