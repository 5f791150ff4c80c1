"""Bundled data: the default LeNet-5 model, ten sample digits, and the held-out digits.

- ``default.safetensors``: LeNet-5 trained by ``tools/train_lenet5.py`` and converted with
  ``engine.convert.from_torch``;
- ``samples.npy``: ten preprocessed held-out digits (float32, 10x1x32x32) for ``engine run``;
- ``heldout.npz``: the 1,000 held-out MNIST digits as raw uint8 28x28 images and their
  labels, preprocessed at evaluation time by ``preprocess_digits`` -- the same function
  the training script uses, so ``engine run --eval`` reproduces PyTorch's accuracy.
"""

from importlib import resources

import numpy as np

MEAN, STD, PAD = 0.1307, 0.3081, 2


def path(name):
    """Filesystem path of a bundled file."""
    return str(resources.files("engine") / "data" / name)


def preprocess_digits(images, mean=MEAN, std=STD, pad=PAD):
    """uint8 (N, 28, 28) digits -> float32 (N, 1, 32, 32) network inputs, as in training:
    scale to [0, 1], zero-pad to 32x32 (LeNet-5's input size), normalise."""
    x = np.asarray(images).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return ((x - mean) / std).astype(np.float32)


def load_heldout():
    """(uint8 images (N, 28, 28), int64 labels (N,)) of the held-out digits."""
    with np.load(path("heldout.npz"), allow_pickle=False) as f:
        return f["images"], f["labels"].astype(np.int64)
