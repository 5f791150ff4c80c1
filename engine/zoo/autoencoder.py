"""A convolutional autoencoder: stride-2 conv encoder, transposed-conv decoder, sigmoid."""

from ._core import register


@register("conv_autoencoder", input_size=(1, 28, 28), num_classes=None, output="out",
          size_multiple=4, embedding="encoder.3", preprocessing=None,
          options={"in_channels": 1},
          description="Conv autoencoder: encoder conv 3x3/2 (32) + ReLU, conv 3x3/2 (64) + ReLU "
                      "(code: 64 x H/4 x W/4); decoder conv_transpose 3x3/2 (32, output_padding "
                      "1) + ReLU, conv_transpose 3x3/2 (C) + sigmoid; reconstructs inputs in "
                      "[0, 1] of the input's size")
def conv_autoencoder(net, in_channels=1):
    x = net.input(in_channels)
    x = net.relu(net.conv(x, "encoder.0", 32, 3, 2, 1), "encoder.1")
    x = net.relu(net.conv(x, "encoder.2", 64, 3, 2, 1), "encoder.3")
    x = net.relu(net.conv_transpose(x, "decoder.0", 32, 3, 2, 1, output_padding=1), "decoder.1")
    x = net.conv_transpose(x, "decoder.2", in_channels, 3, 2, 1, output_padding=1)
    return net.sigmoid(x, "decoder.3")
