"""LeNet-5, AlexNet (torchvision's and the 2012 paper's), ZFNet."""

from ._core import register

MNIST = {"channels": "grayscale", "scale": 1 / 255, "pad": 2, "mean": [0.1307], "std": [0.3081]}


@register("lenet5", input_size=(1, 32, 32), num_classes=10, fixed_input=True,
          preprocessing=MNIST, head="12.weight", embedding="11",
          description="LeNet-5 (LeCun et al. 1998) as in tools/train_lenet5.py: "
                      "nn.Sequential parameter names 0, 3, 7, 10, 12")
def lenet5(net):
    x = net.input(1)
    x = net.max_pool(net.relu(net.conv(x, "0", 6, 5), "1"), "2", 2)
    x = net.max_pool(net.relu(net.conv(x, "3", 16, 5), "4"), "5", 2)
    x = net.flatten(x, "6")
    x = net.dropout(net.relu(net.linear(x, "7", 120), "8"), "9", 0.2)
    x = net.relu(net.linear(x, "10", 84), "11")
    return net.linear(x, "12", net.num_classes)


def _classifier(net, x, hidden=4096, dropout=0.5):
    """AlexNet/VGG-style head: [Dropout], Linear, ReLU, [Dropout], Linear, ReLU, Linear."""
    x = net.dropout(x, "classifier.0", dropout)
    x = net.relu(net.linear(x, "classifier.1", hidden), "classifier.2")
    x = net.dropout(x, "classifier.3", dropout)
    x = net.relu(net.linear(x, "classifier.4", hidden), "classifier.5")
    return net.linear(x, "classifier.6", net.num_classes)


@register("alexnet", input_size=(3, 224, 224), head="classifier.6.weight",
          embedding="classifier.5",
          description="AlexNet as in torchvision (single tower, 64-192-384-256-256 channels, "
                      "adaptive 6x6 average pool; inputs >= 63x63)")
def alexnet(net):
    x = net.input(3)
    x = net.relu(net.conv(x, "features.0", 64, 11, stride=4, padding=2), "features.1")
    x = net.max_pool(x, "features.2", 3, 2)
    x = net.relu(net.conv(x, "features.3", 192, 5, padding=2), "features.4")
    x = net.max_pool(x, "features.5", 3, 2)
    x = net.relu(net.conv(x, "features.6", 384, 3, padding=1), "features.7")
    x = net.relu(net.conv(x, "features.8", 256, 3, padding=1), "features.9")
    x = net.relu(net.conv(x, "features.10", 256, 3, padding=1), "features.11")
    x = net.max_pool(x, "features.12", 3, 2)
    x = net.flatten(net.adaptive_avg_pool(x, "avgpool", 6))
    return _classifier(net, x)


def _lrn(net, x, path):
    # Krizhevsky et al. 2012, section 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75.
    return net.lrn(x, path, size=5, alpha=1e-4, beta=0.75, k=2.0)


@register("alexnet_original", input_size=(3, 227, 227), fixed_input=True,
          head="classifier.6.weight", embedding="classifier.5",
          description="AlexNet as in Krizhevsky et al. 2012: 96-256-384-384-256 channels, "
                      "LRN after conv1 and conv2, groups=2 on conv2/4/5 (the two GPUs), 227 input")
def alexnet_original(net):
    x = net.input(3)
    x = net.relu(net.conv(x, "features.0", 96, 11, stride=4), "features.1")
    x = net.max_pool(_lrn(net, x, "features.2"), "features.3", 3, 2)
    x = net.relu(net.conv(x, "features.4", 256, 5, padding=2, groups=2), "features.5")
    x = net.max_pool(_lrn(net, x, "features.6"), "features.7", 3, 2)
    x = net.relu(net.conv(x, "features.8", 384, 3, padding=1), "features.9")
    x = net.relu(net.conv(x, "features.10", 384, 3, padding=1, groups=2), "features.11")
    x = net.relu(net.conv(x, "features.12", 256, 3, padding=1, groups=2), "features.13")
    x = net.flatten(net.max_pool(x, "features.14", 3, 2))
    return _classifier(net, x)


@register("zfnet", input_size=(3, 224, 224), fixed_input=True, head="classifier.6.weight",
          embedding="classifier.5",
          description="ZFNet (Zeiler & Fergus 2013): AlexNet with a 7x7 stride-2 conv1, "
                      "5x5 stride-2 conv2, wider conv3-5 (512-1024-512), LRN, 224 input "
                      "(110-55-26-13-13-13-6 maps; pools use ceil_mode)")
def zfnet(net):
    x = net.input(3)
    x = net.relu(net.conv(x, "features.0", 96, 7, stride=2, padding=1), "features.1")
    x = _lrn(net, net.max_pool(x, "features.2", 3, 2, ceil_mode=True), "features.3")
    x = net.relu(net.conv(x, "features.4", 256, 5, stride=2), "features.5")
    x = _lrn(net, net.max_pool(x, "features.6", 3, 2, ceil_mode=True), "features.7")
    x = net.relu(net.conv(x, "features.8", 512, 3, padding=1), "features.9")
    x = net.relu(net.conv(x, "features.10", 1024, 3, padding=1), "features.11")
    x = net.relu(net.conv(x, "features.12", 512, 3, padding=1), "features.13")
    x = net.flatten(net.max_pool(x, "features.14", 3, 2, ceil_mode=True))
    return _classifier(net, x)
