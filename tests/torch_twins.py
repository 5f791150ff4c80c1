"""PyTorch definitions of the zoo architectures torchvision does not have (plain torch.nn).

Their parameter names are the contract ``engine.zoo`` follows for these models; the zoo
tests load their state dicts into ``engine.zoo.get`` and compare outputs.
"""

import torch
from torch import nn

TWINS = {}


def twin(name):
    def deco(fn):
        TWINS[name] = fn
        return fn
    return deco


@twin("lenet5")
def lenet5(num_classes=10):
    """As tools/train_lenet5.py trains it."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))


class _Classic(nn.Module):
    """features -> flatten -> classifier (AlexNet 2012, ZFNet)."""

    def __init__(self, features, in_features, num_classes=1000):
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(in_features, 4096), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def _lrn():
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)


@twin("alexnet_original")
def alexnet_original(num_classes=1000):
    """Krizhevsky et al. 2012: 227 input, LRN, groups=2 on conv2/4/5."""
    return _Classic(nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), _lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), _lrn(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2)), 256 * 6 * 6, num_classes)


@twin("zfnet")
def zfnet(num_classes=1000):
    """Zeiler & Fergus 2013: 7x7/2 conv1, 5x5/2 conv2, 512-1024-512 conv3-5."""
    return _Classic(nn.Sequential(
        nn.Conv2d(3, 96, 7, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True), _lrn(),
        nn.Conv2d(96, 256, 5, stride=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True), _lrn(),
        nn.Conv2d(256, 512, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(512, 1024, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(1024, 512, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True)), 512 * 6 * 6, num_classes)


class _VGG(nn.Module):
    """torchvision's VGG layout, with "LRN" and 1x1 ("1:C") entries in the configuration."""

    def __init__(self, cfg, num_classes=1000):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            elif v == "LRN":
                layers.append(_lrn())
            else:
                k, out = (1, int(v[2:])) if isinstance(v, str) else (3, v)
                layers += [nn.Conv2d(c, out, k, padding=k // 2), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@twin("vgg11_lrn")
def vgg11_lrn(num_classes=1000):
    return _VGG([64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
                num_classes)


@twin("vgg16_c")
def vgg16_c(num_classes=1000):
    return _VGG([64, 64, "M", 128, 128, "M", 256, 256, "1:256", "M", 512, 512, "1:512", "M",
                 512, 512, "1:512", "M"], num_classes)


class _SE(nn.Module):
    """timm's SEModule: mean, 1x1 conv fc1, ReLU, 1x1 conv fc2, sigmoid gate."""

    def __init__(self, c, reduction=16):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // reduction, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(c // reduction, c, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class _SEBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = _SE(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.se(self.bn3(self.conv3(y)))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class _SEResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(_SEBottleneck(inplanes, planes, stride))
                inplanes = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@twin("se_resnet50")
def se_resnet50(num_classes=1000):
    return _SEResNet((3, 4, 6, 3), num_classes)


class _MobileNetV1(nn.Module):
    CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
           (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, num_classes=1000):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
                                nn.ReLU(inplace=True))]
        c = 32
        for out, s in self.CFG:
            layers.append(nn.Sequential(
                nn.Conv2d(c, c, 3, s, 1, groups=c, bias=False), nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)))
            c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


@twin("mobilenet_v1")
def mobilenet_v1(num_classes=1000):
    return _MobileNetV1(num_classes)


class _DoubleConv(nn.Module):
    def __init__(self, cin, cout, batch_norm=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))


class _UNet(nn.Module):
    def __init__(self, in_channels=1, num_classes=2, base=64, batch_norm=False):
        super().__init__()
        c = in_channels
        for i in range(1, 5):
            setattr(self, f"enc{i}", _DoubleConv(c, base * 2 ** (i - 1), batch_norm))
            setattr(self, f"pool{i}", nn.MaxPool2d(2))
            c = base * 2 ** (i - 1)
        self.bottleneck = _DoubleConv(c, base * 16, batch_norm)
        for i in range(4, 0, -1):
            c = base * 2 ** (i - 1)
            setattr(self, f"up{i}", nn.ConvTranspose2d(2 * c, c, 2, stride=2))
            setattr(self, f"dec{i}", _DoubleConv(2 * c, c, batch_norm))
        self.head = nn.Conv2d(base, num_classes, 1)

    def forward(self, x):
        skips = []
        for i in range(1, 5):
            x = getattr(self, f"enc{i}")(x)
            skips.append(x)
            x = getattr(self, f"pool{i}")(x)
        x = self.bottleneck(x)
        for i in range(4, 0, -1):
            x = getattr(self, f"up{i}")(x)
            x = getattr(self, f"dec{i}")(torch.cat([skips[i - 1], x], 1))
        return self.head(x)


@twin("unet")
def unet(num_classes=2, in_channels=1, base=64, batch_norm=False):
    return _UNet(in_channels, num_classes, base, batch_norm)


@twin("context_net")
def context_net(num_classes=21):
    """Yu & Koltun 2016 basic context module: C channels, dilations 1,1,2,4,8,16,1, 1x1."""
    c, layers = num_classes, []
    for d in (1, 1, 2, 4, 8, 16, 1):
        layers += [nn.Conv2d(c, c, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(c, c, 1))
    return nn.Sequential(*layers)


class _ConvAutoencoder(nn.Module):
    def __init__(self, in_channels=1):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, in_channels, 3, 2, 1, output_padding=1), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


@twin("conv_autoencoder")
def conv_autoencoder(in_channels=1):
    return _ConvAutoencoder(in_channels)
