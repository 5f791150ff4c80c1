"""The engine command line: the README's main job and clean failures."""

import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from engine.cli import main


def run_cli(*args):
    p = subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_run_default_model_classifies_the_bundled_digits():
    code, out, err = run_cli("run", "--threads", "1", "--repeat", "3")
    assert code == 0, err
    assert "LeNet-5" in out and "latency: median" in out
    lines = [l for l in out.splitlines() if l.startswith("sample ")]
    assert len(lines) == 10
    correct = sum(l.split(": ")[1].split(" ")[0] == l.split("[true: ")[1].rstrip("]")
                  for l in lines)
    assert correct >= 9          # the trained LeNet-5 gets the bundled samples right


def test_summary_and_plan(capsys):
    path = engine.cli._data_path(engine.cli.DEFAULT_MODEL)
    assert main(["summary", path, "--plan", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "parameters: 61,706" in out and "memory plan" in out
    assert "execution plan" in out


def test_bench(capsys):
    path = engine.cli._data_path(engine.cli.DEFAULT_MODEL)
    assert main(["bench", path, "--batch", "2", "--repeat", "5", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "median" in out and "p90" in out and "peak RSS" in out


def test_run_with_npy_input(tmp_path, capsys):
    x = np.load(engine.cli._data_path(engine.cli.DEFAULT_SAMPLES))[:2]
    p = tmp_path / "two.npy"
    np.save(p, x)
    path = engine.cli._data_path(engine.cli.DEFAULT_MODEL)
    assert main(["run", path, str(p), "--top", "2", "--repeat", "1"]) == 0
    assert "#1" in capsys.readouterr().out


@pytest.mark.parametrize("args,msg", [
    (["run", "missing.safetensors"], "cannot read model file"),
    (["summary", __file__], "header claims"),
    (["run", "--threads", "0"], "--threads must be an int from 1 to 1024, got 0"),
])
def test_user_errors_are_one_line_and_exit_2(args, msg):
    code, out, err = run_cli(*args)
    assert code == 2
    assert msg in err and "Traceback" not in err


def test_version_and_ops(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert engine.__version__ in out and "openmp" in out.lower()
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    for op in ("conv", "max_pool", "softmax", "interpolate"):
        assert op in out


# -- run --eval, images, zoo names -------------------------------------------------------------
def test_run_eval_matches_pytorch_accuracy():
    code, out, err = run_cli("run", "--eval", "--threads", "1")
    assert code == 0, err
    model = engine.load(engine.cli._data_path(engine.cli.DEFAULT_MODEL))
    acc = model.metadata["heldout_accuracy_torch"]
    assert f"held-out accuracy: {acc:.4f} (" in out and "-> identical" in out
    assert "/1000 digits" in out


def test_run_preprocesses_images_per_metadata(tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    from engine.data import load_heldout
    images, labels = load_heldout()
    paths = []
    for i in range(4):      # larger than 28x28: resized, padded, normalised as in training
        p = tmp_path / f"digit{i}.png"
        Image.fromarray(images[i]).resize((56, 56), Image.NEAREST).save(p)
        paths.append(str(p))
    path = engine.cli._data_path(engine.cli.DEFAULT_MODEL)
    assert main(["run", path, *paths, "--top", "1", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    got = [line.split(": ")[1].split(" ")[0] for line in out.splitlines()
           if line.startswith(str(tmp_path))]
    assert len(got) == 4
    assert sum(g == str(t) for g, t in zip(got, labels[:4])) >= 3


def test_read_image_channels_scale_pad_mean_std(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51
    p = tmp_path / "c.png"
    Image.fromarray(rgb).save(p)
    prep = {"input_size": [6, 8], "channels": "bgr", "pad": 1, "scale": 1 / 255,
            "mean": [0.5, 0.0, 0.0], "std": [0.5, 1.0, 1.0]}
    a = engine.cli._read_image(str(p), (None, 3, 6, 8), prep)
    assert a.shape == (3, 6, 8)
    np.testing.assert_allclose(a[:, 1:-1, 1:-1].reshape(3, -1).mean(1), [-0.6, 0, 1], atol=1e-5)
    np.testing.assert_allclose(a[0, 0], -1.0)          # padding is zero before normalising


def test_zoo_names_work_as_models(capsys):
    zoo = pytest.importorskip("engine.zoo")
    assert "lenet5" in zoo.names()
    assert main(["summary", "lenet5"]) == 0
    assert "parameters: 61,706" in capsys.readouterr().out
    assert main(["bench", "lenet5", "--repeat", "2", "--warmup", "1"]) == 0


# -- engine convert ---------------------------------------------------------------------------
NET_PY = '''
import torch
from torch import nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2, ceil_mode=True)
        return self.fc(x.mean((2, 3)))

class Sorts(nn.Module):
    def forward(self, x):
        return torch.sort(x, 1)[0].cumsum(1)
'''


def run_convert(*args, cwd):
    root = os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(cwd), root, os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-m", "engine", "convert", *args], capture_output=True,
                       text=True, timeout=300, cwd=cwd, env=env)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    torch = pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("user")
    (d / "mynets.py").write_text(NET_PY)
    sys.path.insert(0, str(d))
    try:
        import mynets
        torch.manual_seed(0)
        net = mynets.Net().eval()
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 1.5)
        torch.save({"model": net.state_dict(), "epoch": 7}, d / "net.pth")
        torch.save(net.state_dict(), d / "plain.pth")
        torch.save(net, d / "whole.pth")
        torch.jit.save(torch.jit.script(net), str(d / "net.pt"))
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("mynets", None)
    (d / "labels.txt").write_text("cat\ndog\n\nbird\nfish\n")
    return d


def _verification(out):
    line = out.strip().splitlines()[-1]
    assert line.startswith("verification: max abs diff"), out
    rel = float(line.split("max rel diff ")[1].split(" ")[0])
    assert rel <= 1e-4
    return line


def test_convert_module_with_metadata_end_to_end(user_files):
    d = user_files
    code, out, err = run_convert("net.pth", "--module", "mynets:Net", "--input-shape", "1,3,16,16",
                                 "-o", "net.safetensors", "--labels", "labels.txt",
                                 "--mean", "0.5,0.4,0.3", "--std", "0.25", "--channel-order", "bgr",
                                 "--input-size", "16,16", cwd=d)
    assert code == 0, err
    for step in ("loading checkpoint", "tracing Net", "mapping", "verifying"):
        assert step in out
    _verification(out)
    m = engine.load(d / "net.safetensors")
    assert m.inputs[0].shape == (None, 3, 16, 16)
    assert m.metadata["labels"] == ["cat", "dog", "bird", "fish"]
    prep = m.metadata["preprocessing"]
    assert prep["mean"] == [0.5, 0.4, 0.3] and prep["std"] == [0.25] * 3
    assert prep["channels"] == "bgr" and prep["input_size"] == [16, 16]
    assert m.metadata["verification"]["max_rel_diff"] <= 1e-4
    assert "conv.weight" in m.constants and "bn.running_var" in m.constants
    code, out, err = run_cli("run", str(d / "net.safetensors"), "--repeat", "1")
    assert code == 0 and any(lbl in out for lbl in ("cat", "dog", "bird", "fish")), err


def test_convert_torchscript(user_files):
    code, out, err = run_convert("net.pt", "--input-shape", "2,3,16,16", "-o", "ts.safetensors",
                                 cwd=user_files)
    assert code == 0, err
    assert "TorchScript" in out
    assert "random input 2x3x16x16" in _verification(out)
    assert engine.load(user_files / "ts.safetensors").inputs[0].shape == (None, 3, 16, 16)


def test_convert_zoo_architecture(tmp_path):
    pytest.importorskip("engine.zoo")
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v) for k, v in engine.load(
        engine.cli._data_path(engine.cli.DEFAULT_MODEL)).constants.items()}
    sd = {f"module.{k}": v for k, v in sd.items()}               # DataParallel names
    torch.save({"state_dict": sd}, tmp_path / "lenet.pth")
    code, out, err = run_convert("lenet.pth", "--arch", "lenet5", "-o", "z.safetensors",
                                 cwd=tmp_path)
    assert code == 0, err
    assert "loading checkpoint" in out and "61,706" in out
    assert out.strip().splitlines()[-1].startswith("verification:")
    m = engine.load(tmp_path / "z.safetensors")
    x = np.load(engine.cli._data_path(engine.cli.DEFAULT_SAMPLES))
    ref = engine.Session(engine.cli._data_path(engine.cli.DEFAULT_MODEL), threads=1).run(x)[0]
    np.testing.assert_allclose(engine.Session(m, threads=1).run(x)[0], ref, atol=1e-5)


@pytest.mark.parametrize("args,msg", [
    (["plain.pth", "-o", "x.safetensors"], "is a state dict (weights only); say which"),
    (["plain.pth", "--module", "mynets:Net", "-o", "x.safetensors"], "needs --input-shape"),
    (["whole.pth", "--module", "mynets:Net", "--input-shape", "1,3,8,8", "-o", "x.safetensors"],
     "not a state dict"),
    (["plain.pth", "--module", "mynets:Nope", "--input-shape", "1,3,8,8", "-o", "x.safetensors"],
     "has no attribute 'Nope'"),
    (["plain.pth", "--module", "mynets:Net", "--input-shape", "1,x", "-o", "x.safetensors"],
     "--input-shape must be"),
    (["missing.pth", "--arch", "lenet5", "-o", "x.safetensors"], "does not exist"),
    (["plain.pth", "--arch", "lenet5", "-o", "x.safetensors"], "lenet5"),
])
def test_convert_errors_exit_2(user_files, args, msg, monkeypatch, capsys):
    monkeypatch.chdir(user_files)
    monkeypatch.syspath_prepend(str(user_files))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    code = main(["convert", *args])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert msg in err and len(err.strip().splitlines()) <= 3
    assert not (user_files / "x.safetensors").exists()


def test_convert_unsupported_ops_lists_them(user_files, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    torch.save({}, user_files / "empty.pth")       # a parameter-free module's state dict
    monkeypatch.chdir(user_files)
    monkeypatch.syspath_prepend(str(user_files))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    code = main(["convert", "empty.pth", "--module", "mynets:Sorts", "--input-shape", "1,4",
                 "-o", "x.safetensors"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot convert Sorts: 2 operations are not supported" in err
    assert "aten.sort" in err and "aten.cumsum" in err
    assert "mynets.py:19 in forward: return torch.sort(x, 1)[0].cumsum(1)" in err


def test_convert_without_torch_is_a_clean_error(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from engine.cli import main\n"
            "sys.exit(main(['convert', sys.argv[1], '--arch', 'lenet5', '-o', 'x.safetensors']))\n")
    (tmp_path / "w.pth").write_bytes(b"PK")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.pth")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "pip install 'engine[torch]'" in p.stderr


def test_import_and_run_never_import_torch():
    """PyTorch is only for conversion: with torch unimportable, engine loads and runs."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import engine, engine.convert\n"
            "from engine.cli import main\n"
            "rc = main(['run', '--repeat', '1', '--threads', '1'])\n"
            "rc = rc or main(['run', '--eval', '--threads', '1'])\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "sys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "LeNet-5" in p.stdout and "-> identical" in p.stdout
