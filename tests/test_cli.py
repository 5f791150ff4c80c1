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
    (["summary", __file__], "not an engine model file but a text file"),
    (["run", "--threads", "0"], "--threads must be an int from 1 to 1024, got 0"),
])
def test_user_errors_are_one_line_and_exit_2(args, msg):
    code, out, err = run_cli(*args)
    assert code == 2
    assert msg in err and "Traceback" not in err


def test_version_and_ops(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert engine.__version__ in out and "threads:" in out
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    for op in ("conv", "max_pool", "softmax", "interpolate"):
        assert op in out
    assert "winograd_f4" in out and max(len(line) for line in out.splitlines()) <= 100


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
    a = engine.inputs.read_image(str(p), (None, 3, 6, 8), prep)
    assert a.shape == (3, 6, 8)
    np.testing.assert_allclose(a[:, 1:-1, 1:-1].reshape(3, -1).mean(1), [-0.6, 0, 1], atol=1e-5)
    np.testing.assert_allclose(a[0, 0], -1.0)          # padding is zero before normalising


def test_zoo_names_work_as_models(capsys):
    zoo = pytest.importorskip("engine.zoo")
    assert "lenet5" in zoo.names()
    assert main(["summary", "lenet5"]) == 0
    assert "parameters: 61,706" in capsys.readouterr().out
    assert main(["bench", "lenet5", "--repeat", "2", "--warmup", "1"]) == 0
    capsys.readouterr()
    assert main(["run", "lenet5", "--threads", "1", "--repeat", "1"]) == 0
    assert "lenet5 from the model zoo has random weights" in capsys.readouterr().out
    assert main(["run", "--threads", "1", "--repeat", "1"]) == 0       # the bundled, trained
    assert "random weights" not in capsys.readouterr().out


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

class Whole(nn.Module):          # flattens the batch in too: only a fixed batch converts
    def forward(self, x):
        return torch.flatten(x) * 2
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
        torch.save({}, d / "empty_sd.pth")          # Whole has no parameters
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


def test_convert_fixed_batch(user_files, monkeypatch, capsys):
    monkeypatch.chdir(user_files)
    monkeypatch.syspath_prepend(str(user_files))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    assert main(["convert", "empty_sd.pth", "--module", "mynets:Whole", "--input-shape", "2,3",
                 "--fixed-batch", "-o", "whole.safetensors"]) == 0
    assert "verification: max abs diff" in capsys.readouterr().out
    assert engine.load(str(user_files / "whole.safetensors")).inputs[0].shape == (2, 3)


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
    # a shape the module cannot take: eager PyTorch's words, no export symbols (s77)
    (["plain.pth", "--module", "mynets:Net", "--input-shape", "1,3,64", "-o", "x.safetensors"],
     "Net fails on an input of shape (1, 3, 64) (the example input, --input-shape)"),
    (["plain.pth", "--arch", "lenet5", "--input-shape", "1,1,32,32", "-o", "x.safetensors"],
     "--input-shape applies to --module and TorchScript files; lenet5 takes"),
    # code that will not take a symbolic batch: the error names the flag that converts it
    (["empty_sd.pth", "--module", "mynets:Whole", "--input-shape", "2,3", "-o",
      "x.safetensors"], "with the batch size fixed at the example's (2) it converts"),
    (["plain.pth", "--arch", "lenet5", "--fixed-batch", "-o", "x.safetensors"],
     "--fixed-batch applies to --module and ONNX conversions"),
])
def test_convert_errors_exit_2(user_files, args, msg, monkeypatch, capsys):
    monkeypatch.chdir(user_files)
    monkeypatch.syspath_prepend(str(user_files))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    code = main(["convert", *args])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert msg in err and _one_error_line(err)
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



# -- hostile files and bad options: one line, exit 2, never a traceback ----------------------
DEFAULT = engine.cli._data_path(engine.cli.DEFAULT_MODEL)


def _one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("engine: error: "), err
    assert "Traceback" not in err
    return True


def fails(capsys, argv, *needles):
    """main(argv) refuses: exit 2, one 'engine: error:' line naming each of ``needles``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    _one_error_line(err)
    for n in needles:
        assert n in err, (n, err)
    return err


def _npy_header(path, header, data=b"", version=b"\x01\x00"):
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    size = len(header).to_bytes(2 if version == b"\x01\x00" else 4, "little")
    path.write_bytes(b"\x93NUMPY" + version + size + header.encode() + data)


def _png_header(path, w, h):
    """A PNG whose header says w x h (nothing to decode): Pillow sees the size on open."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    one = np.ones((1, 1, 32, 32), np.float32)
    (d / "garbage.npy").write_bytes(os.urandom(1000))
    (d / "empty.npy").write_bytes(b"")
    np.save(d / "string.npy", np.array(["a", "b"]))
    np.save(d / "zerod.npy", np.array(3.0, np.float32))
    np.save(d / "object.npy", np.array([1, None], dtype=object), allow_pickle=True)
    np.save(d / "complex.npy", one.astype(np.complex64))
    np.save(d / "bool.npy", one.astype(bool))
    np.save(d / "datetime.npy", np.array(["2020-01-01"], dtype="datetime64[D]"))
    np.save(d / "structured.npy", np.zeros(1, dtype=[("a", "f4"), ("b", "i4")]))
    np.save(d / "nan.npy", np.where(np.arange(1024).reshape(one.shape) == 5, np.nan, one))
    np.save(d / "inf.npy", np.full(one.shape, np.inf, np.float16))
    np.save(d / "f64_huge.npy", np.full(one.shape, 1e300))
    np.save(d / "wrongshape.npy", np.ones((1, 3, 5, 5), np.float32))
    np.save(d / "empty_batch.npy", np.ones((0, 1, 32, 32), np.float32))
    np.save(d / "rank9.npy", np.ones((1,) * 9, np.float32))
    np.save(d / "full.npy", one)
    (d / "truncated.npy").write_bytes((d / "full.npy").read_bytes()[:200])
    _npy_header(d / "hugeshape.npy",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 1, 32000, 32000), }",
                b"\0" * 64)
    _npy_header(d / "negative.npy",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 1, 32, 32), }", b"\0" * 64)
    _npy_header(d / "code.npy", "{'descr': '<f4', 'fortran_order': False, "
                                "'shape': (__import__('os').getpid(),), }")
    _npy_header(d / "unbalanced.npy", "{'descr': '<f4', 'fortran_order': False, "
                                      "'shape': ((1, 32, 32), }")   # tokenize.TokenError
    _npy_header(d / "v3.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 32, 32), }",
                b"\0" * 4096, b"\x03\x00")
    (d / "adir.npy").mkdir()
    (d / "text.png").write_text("not an image")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    _png_header(d / "bomb.png", 20000, 20000)          # Pillow's DecompressionBombError
    _png_header(d / "large.png", 10000, 10000)         # between 1x and 2x Pillow's limit
    (d / "labels_bin.txt").write_bytes(bytes(range(256)) * 8)
    (d / "labels_latin1.txt").write_bytes("caf\xe9\n".encode("latin1") * 10)
    (d / "labels_nul.txt").write_text("a\0b\n" * 10)
    (d / "labels_empty.txt").write_text("\n \n")
    (d / "labels_long.txt").write_text("x" * 2000 + "\n")
    (d / "ok.pth").write_bytes(b"PK")
    if hasattr(os, "mkfifo"):
        os.mkfifo(d / "fifo.npy")
    return d


# `engine convert` of a stand-in checkpoint to a model file; the cases below add one bad option
CONVERT = ["convert", "{d}/ok.pth", "-o", "{d}/x.safetensors"]


@pytest.mark.parametrize("argv,needles", [
    # .npy inputs: never unpickled; dtype, rank, size, finiteness checked
    (["run", DEFAULT, "{d}/garbage.npy"], ["not a valid .npy file", "magic"]),
    (["run", DEFAULT, "{d}/empty.npy"], ["not a valid .npy file"]),
    (["run", DEFAULT, "{d}/string.npy"], ["holds strings", "real numbers"]),
    (["run", DEFAULT, "{d}/zerod.npy"], ["rank 0"]),
    (["run", DEFAULT, "{d}/object.npy"], ["Python objects", "never unpickled"]),
    (["run", DEFAULT, "{d}/complex.npy"], ["complex numbers"]),
    (["run", DEFAULT, "{d}/bool.npy"], ["booleans", "astype(np.float32)"]),
    (["run", DEFAULT, "{d}/datetime.npy"], ["dates"]),
    (["run", DEFAULT, "{d}/structured.npy"], ["structured records"]),
    (["run", DEFAULT, "{d}/nan.npy"], ["1 NaN or infinite value;"]),
    (["run", DEFAULT, "{d}/inf.npy"], ["1024 NaN or infinite values"]),
    (["run", DEFAULT, "{d}/f64_huge.npy"], ["beyond float32's range"]),
    (["run", DEFAULT, "{d}/wrongshape.npy"], ["(1, 3, 5, 5)", "the model takes (N, 1, 32, 32)"]),
    (["run", DEFAULT, "{d}/full.npy", "{d}/wrongshape.npy"], ["wrongshape.npy: an array"]),
    (["run", DEFAULT, "{d}/empty_batch.npy"], ["empty array"]),
    (["run", DEFAULT, "{d}/rank9.npy"], ["rank 9", "rank 1 to 8"]),
    (["run", DEFAULT, "{d}/truncated.npy"], ["header promises 4096 bytes", "truncated"]),
    (["run", DEFAULT, "{d}/hugeshape.npy"], ["more than the", "bytes"]),
    (["run", DEFAULT, "{d}/negative.npy"], ["negative dimension"]),
    (["run", DEFAULT, "{d}/code.npy"], ["not a valid .npy file"]),
    (["run", DEFAULT, "{d}/unbalanced.npy"], ["not a valid .npy file"]),
    (["run", DEFAULT, "{d}/v3.npy"], ["unsupported .npy format version (3, 0)"]),
    (["run", DEFAULT, "{d}/adir.npy"], ["directory", "holds no images"]),
    (["run", DEFAULT, "{d}/missing.npy"], ["does not exist"]),
    (["run", DEFAULT, "{d}/fifo.npy"], ["not a regular file"]),
    # models
    (["run", "{d}/missing.safetensors"], ["cannot read model file", "no such file"]),
    (["run", "nosuchzoo"], ["nor is it a model zoo name"]),
    (["run", "{d}/adir.npy"], ["model file", "is a directory"]),
    (["run", "{d}/fifo.npy"], ["model file", "not a regular file"]),
    (["summary", "{d}/full.npy"], ["a NumPy .npy array"]),
    # options: ranges, and buffers within the byte cap before anything is allocated
    (["run", "--threads", "0"], ["--threads must be an int from 1 to 1024, got 0"]),
    (["run", "--threads", "100000"], ["--threads must be an int from 1 to 1024"]),
    (["run", "--top", "0"], ["--top must be"]),
    (["run", "--repeat", "10000000000"], ["--repeat must be an int from 1 to 100000"]),
    (["run", "--eval", DEFAULT, "{d}/full.npy"], ["takes no input files"]),
    (["summary", DEFAULT, "--batch", "0"], ["--batch must be"]),
    (["summary", DEFAULT, "--batch", "100000000"], ["409600000000 bytes", "more than"]),
    (["summary", DEFAULT, "--batch", str(10**30)], ["--batch must be an int from 1 to"]),
    (["summary", DEFAULT, "--plan", "--threads", "5000"], ["--threads must be"]),
    (["bench", DEFAULT, "--batch", "100000000"], ["the input at --batch 100000000", "more than"]),
    (["bench", DEFAULT, "--warmup", "-1"], ["--warmup must be an int from 0"]),
    (["bench", DEFAULT, "--vs", "bogus"], ["--vs takes a comma list"]),
    # convert: every option checked before anything is loaded (no torch needed for these)
    (["convert", "{d}/missing.pth", "-o", "{d}/x.safetensors"], ["does not exist"]),
    (["convert", "{d}/adir.npy", "-o", "{d}/x.safetensors"], ["is a directory"]),
    (["convert", "{d}/fifo.npy", "-o", "{d}/x.safetensors"], ["not a regular file"]),
    (["convert", "{d}/ok.pth", "-o", "{d}/adir.npy"], ["-o", "is a directory"]),
    (["convert", "{d}/ok.pth", "-o", "{d}/nodir/x.safetensors"], ["does not exist"]),
    (["convert", "{d}/ok.pth", "-o", "{d}/ok.pth"], ["is the source file"]),
    (["convert", "{d}/ok.pth", "-o", "{d}/model.onnx"],
     ["name it *.safetensors", "engine export model.safetensors -o model.onnx"]),
    ([*CONVERT, "--labels", "{d}/labels_bin.txt"],
     ["not UTF-8 text"]),
    ([*CONVERT, "--labels", "{d}/labels_latin1.txt"],
     ["not UTF-8 text"]),
    ([*CONVERT, "--labels", "{d}/labels_nul.txt"],
     ["control characters"]),
    ([*CONVERT, "--labels", "{d}/labels_empty.txt"],
     ["holds no labels"]),
    ([*CONVERT, "--labels", "{d}/labels_long.txt"],
     ["2000 characters"]),
    ([*CONVERT, "--labels", "{d}/adir.npy"],
     ["labels file", "is a directory"]),
    ([*CONVERT, "--labels", "{d}/nolabels.txt"],
     ["labels file", "does not exist"]),
    ([*CONVERT, "--std", "0,0,0"], ["--std must be positive"]),
    ([*CONVERT, "--std", "1e-320"], ["--std must be positive"]),
    ([*CONVERT, "--std", "nan"], ["finite numbers"]),
    ([*CONVERT, "--mean", "inf"], ["finite numbers"]),
    ([*CONVERT, "--mean", "1e39"], ["finite numbers"]),
    ([*CONVERT, "--num-classes", "-5"],
     ["--num-classes must be an int from 1 to 1000000, got -5"]),
    ([*CONVERT, "--input-shape", "1,3,0,4"],
     ["--input-shape must be"]),
    ([*CONVERT, "--input-shape", "1,3,100000,100000"],
     ["--input-shape", "more than"]),
    ([*CONVERT, "--input-size", "1,2,3,4"],
     ["--input-size must be"]),
    ([*CONVERT, "--input-size", "100000,100000"],
     ["--input-size must be"]),
    ([*CONVERT, "--threads", "2000"], ["--threads must be"]),
])
def test_bad_invocations_are_one_line_exit_2(bad, capsys, argv, needles):
    argv = [a.format(d=bad) for a in argv]
    if any("fifo" in a for a in argv) and not (bad / "fifo.npy").exists():
        pytest.skip("no FIFOs here")
    fails(capsys, argv, *needles)
    assert not (bad / "x.safetensors").exists()


@pytest.mark.parametrize("name,needles", [
    ("text.png", ["cannot read image", "cannot identify image file"]),
    ("corrupt.png", ["cannot read image"]),
    ("bomb.png", ["refused", "400000000 pixels"]),         # Pillow's DecompressionBombError
    ("large.png", ["10000x10000"]),                         # refused before decoding
])
def test_bad_images_are_refused(bad, capsys, name, needles):
    pytest.importorskip("PIL.Image")
    fails(capsys, ["run", DEFAULT, bad / name], *needles)


def test_image_preprocessing_from_metadata_is_checked(tmp_path, capsys):
    """The metadata travels in the (untrusted) model file: a hostile input_size must not
    make the command line resize an image to gigapixels."""
    Image = pytest.importorskip("PIL.Image")
    Image.new("L", (40, 40)).save(tmp_path / "a.png")
    prep = {"input_size": [32, 32], "channels": "grayscale", "pad": 2}
    for bad_prep, needle in [({"input_size": [60000, 60000]}, "model's input size 32x32"),
                             ({"pad": 16}, "preprocessing.pad"),
                             ({"mean": [0.1, 0.2]}, "preprocessing.mean"),
                             ({"std": [0.0]}, "preprocessing.std"),
                             ({"std": [1e-300]}, "preprocessing.std"),
                             ({"mean": [1e300]}, "preprocessing.mean"),
                             ({"scale": 1e-300}, "preprocessing.scale")]:
        with pytest.raises(engine.EngineError, match=needle):
            engine.inputs.read_image(str(tmp_path / "a.png"), (None, 1, 32, 32),
                                   {**prep, **bad_prep})
    model = engine.load(DEFAULT)
    model.metadata["preprocessing"] = {**prep, "input_size": [48, 48]}
    engine.save(model, tmp_path / "m.safetensors")
    fails(capsys, ["run", tmp_path / "m.safetensors", tmp_path / "a.png"], "input_size")


def test_model_without_inputs(tmp_path, capsys, monkeypatch):
    model = engine.load(DEFAULT)
    g = model.graph_dict()
    g.update(inputs=[], outputs=["y"],
             nodes=[{"op": "relu", "name": "r", "inputs": ["0.bias"], "outputs": ["y"],
                     "attrs": {}}])
    monkeypatch.setattr(model, "graph_dict", lambda: g)
    engine.save(model, tmp_path / "m.safetensors")
    np.save(tmp_path / "x.npy", np.ones((1, 1, 32, 32), np.float32))
    for argv in (["run", tmp_path / "m.safetensors"], ["bench", tmp_path / "m.safetensors"],
                 ["run", tmp_path / "m.safetensors", tmp_path / "x.npy"]):
        fails(capsys, argv)


def test_npy_inputs_of_any_real_dtype_are_read(tmp_path):
    x = np.load(engine.cli._data_path(engine.cli.DEFAULT_SAMPLES))[:2]
    for dtype in ("<f2", ">f4", "<f8", "<i8", "<u1"):
        p = tmp_path / f"x_{dtype[1:]}.npy"
        np.save(p, np.asfortranarray(x.astype(dtype)))
        a = engine.inputs.read_npy(str(p), os.path.getsize(p))
        assert a.dtype == np.float32 and a.flags.c_contiguous
        np.testing.assert_array_equal(a, x.astype(dtype).astype(np.float32))


def test_labels_file_utf8_bom_and_line_ends(tmp_path):
    p = tmp_path / "l.txt"
    p.write_bytes("\ufeffchat\r\nchien\r\rcaf\u00e9\n".encode("utf-8"))
    assert engine.cli._read_labels(str(p)) == ["chat", "chien", "caf\u00e9"]


@pytest.mark.parametrize("exc,code,needle", [
    (engine.errors.ConversionError("cannot convert X:\n  op a\n  op b"), 2,
     "engine: error: cannot convert X: op a; op b"),
    (PermissionError(13, "Permission denied", "/x/y"), 2,
     "engine: error: Permission denied ('/x/y')"),
    (MemoryError(), 2, "engine: error: out of memory"),
    (KeyboardInterrupt(), 130, "engine: interrupted"),
])
def test_top_level_handler(monkeypatch, capsys, exc, code, needle):
    def boom(args):
        raise exc
    monkeypatch.setattr(engine.cli, "cmd_ops", boom)
    assert main(["ops"]) == code
    err = capsys.readouterr().err
    assert err.strip() == needle or err.startswith(needle), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bugs_are_not_hidden(monkeypatch):
    """Only engine errors and OS/memory failures are turned into one line; anything else
    is a bug and keeps its traceback."""
    def boom(args):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(engine.cli, "cmd_ops", boom)
    with pytest.raises(ZeroDivisionError):
        main(["ops"])


def test_testers_invocations_in_a_subprocess(tmp_path):
    """A few of the tester's 19 tracebacks, through the real entry point."""
    np.save(tmp_path / "s.npy", np.array(["x"]))
    (tmp_path / "out").mkdir()
    (tmp_path / "w.pth").write_bytes(b"PK")
    for args in (["run", DEFAULT, str(tmp_path / "s.npy")],
                 ["summary", DEFAULT, "--batch", "100000000"],
                 ["convert", str(tmp_path / "w.pth"), "--arch", "lenet5", "-o",
                  str(tmp_path / "out")]):
        code, out, err = run_cli(*args)
        assert code == 2 and _one_error_line(err), (args, err)


# -- hostile checkpoints: size guards before torch inflates anything ---------------------------
@pytest.fixture(scope="module")
def hostile_checkpoints(tmp_path_factory):
    torch = pytest.importorskip("torch")
    import zipfile
    d = tmp_path_factory.mktemp("ckpt")
    torch.save({"w": torch.randn(8, 3), "h": torch.randn(5).half()}, d / "legit.pth")
    torch.save({"w": torch.zeros(1).expand(2**28)}, d / "stride0.pth")      # 1 GiB of views
    base = torch.randn(250_000)
    torch.save({f"w{i}": base for i in range(235)}, d / "views.pth")         # 235 x 1 MB
    torch.save({"w": torch.empty(10**12, device="meta")}, d / "meta.pth")
    torch.save({"w": torch.randn(3).to_sparse()}, d / "sparse.pth")
    torch.save({"w": torch.randn(3, dtype=torch.complex64)}, d / "complex.pth")
    torch.save({"a": torch.randn(3), "hist": list(range(3_000_000))}, d / "bigpickle.pth")
    torch.save({"w": torch.zeros(12345)}, d / "legacy.pth", _use_new_zipfile_serialization=False)
    data = (d / "legacy.pth").read_bytes()                                   # 12345 -> 2**31-1
    i = data.find(b"M" + (12345).to_bytes(2, "little"))
    (d / "legacy_huge.pth").write_bytes(data[:i] + b"J" + (2**31 - 1).to_bytes(4, "little")
                                        + data[i + 3:])
    with zipfile.ZipFile(d / "legit.pth") as zi, \
            zipfile.ZipFile(d / "compressed.pth", "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():               # the same, deflated, one record 64 MiB
            body = bytes(64 * 2**20) if info.filename.endswith("data/0") else zi.read(info)
            zo.writestr(info.filename, body, compress_type=zipfile.ZIP_DEFLATED)
    (d / "garbage.pth").write_bytes(os.urandom(4096))
    (d / "empty.pth").write_bytes(b"")
    return d


@pytest.mark.parametrize("name,needle", [
    ("compressed.pth", "zip members declare"),
    ("stride0.pth", "1073741824 bytes"),
    ("views.pth", "float32 arrays of 235000000 bytes"),
    ("meta.pth", "4000000000000 bytes"),
    ("sparse.pth", "sparse_coo tensor"),
    ("complex.pth", "complex numbers"),
    ("bigpickle.pth", "its pickle"),
    ("legacy_huge.pth", "declares 1 storages of 8589934588 bytes"),
    ("garbage.pth", "not a readable PyTorch checkpoint"),
    ("empty.pth", "empty file"),
])
def test_hostile_checkpoints_are_refused_before_inflating(hostile_checkpoints, name, needle):
    import resource
    from engine.convert.checkpoint import load_state_dict
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(engine.errors.ConversionError, match=needle):
        load_state_dict(hostile_checkpoints / name)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100


def test_legit_checkpoints_still_load(hostile_checkpoints):
    from engine.convert.checkpoint import load_state_dict
    sd = load_state_dict(hostile_checkpoints / "legit.pth")
    assert sd["w"].shape == (8, 3) and sd["h"].dtype == np.float32
    assert load_state_dict(hostile_checkpoints / "legacy.pth")["w"].shape == (12345,)


def test_convert_refuses_hostile_checkpoint_in_one_line(hostile_checkpoints, tmp_path, capsys):
    for name in ("stride0.pth", "compressed.pth"):
        fails(capsys, ["convert", hostile_checkpoints / name, "--arch", "lenet5", "-o",
                       tmp_path / "x.safetensors"], "refused before")
    assert not (tmp_path / "x.safetensors").exists()


def test_config_measures_the_peak(capsys):
    assert main(["config", "--peak"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "peak_gflops" in l)
    first = float(line.split(":", 1)[1].split()[0])
    assert first > 0.5, line          # any CPU of the last decades does far more


def test_tune_flag_tunes_and_caches_next_to_a_model_file(tmp_path, capsys):
    from engine import zoo
    path = tmp_path / "m.safetensors"
    engine.save(zoo.get("resnet18", input_size=(32, 32)), path)   # 3x3 convs: candidates
    assert main(["bench", str(path), "--threads", "1", "--repeat", "2", "--warmup", "0",
                 "--tune"]) == 0
    assert (tmp_path / "m.safetensors.tune.json").exists()
    assert main(["run", "lenet5", "--threads", "1", "--repeat", "1", "--tune"]) == 0
    capsys.readouterr()
    assert main(["bench", "lenet5", "--repeat", "1", "--tune", "--backend", "reference"]) == 2
    assert "--tune applies to the cpu backend" in capsys.readouterr().err


# -- image preprocessing as trained ---------------------------------------------------------

def test_resize_shorter_and_center_crop_match_torchvision(tmp_path):
    """preprocessing.resize_shorter: torchvision's Resize(S) + CenterCrop + ToTensor +
    Normalize, on portrait, landscape and square photos."""
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("torch")
    from tv_compat import import_torchvision
    tv = import_torchvision()
    if tv is None:
        pytest.skip("torchvision not installed")
    T = tv.transforms
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    prep = {"input_size": [224, 224], "resize_shorter": 256, "mean": mean, "std": std,
            "scale": 1 / 255}
    ref = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)])
    rng = np.random.default_rng(0)
    for w, h in ((300, 200), (200, 333), (256, 256), (1000, 257)):
        path = tmp_path / f"img_{w}x{h}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        ours = engine.inputs.read_image(str(path), (1, 3, 224, 224), prep)
        with Image.open(path) as img:
            want = ref(img.convert("RGB")).numpy()
        assert ours.shape == want.shape == (3, 224, 224)
        assert np.abs(ours - want).max() < 1e-5, (w, h)


def test_arch_conversion_stores_imagenet_preprocessing_unless_told():
    """Zoo ImageNet architectures carry torchvision's evaluation transform (as --arch
    conversions store it); options given override it."""
    import argparse
    from engine import zoo
    for name, side, shorter in (("resnet18", 224, 256), ("alexnet_original", 227, 259)):
        prep = zoo.get(name).metadata["preprocessing"]
        assert prep["resize_shorter"] == shorter and prep["input_size"] == [side, side]
        assert prep["mean"] == [0.485, 0.456, 0.406] and prep["std"] == [0.229, 0.224, 0.225]
    for name in ("lenet5", "fcn_resnet50"):        # not an ImageNet classifier
        assert "resize_shorter" not in zoo.get(name).metadata.get("preprocessing", {})
    model = zoo.get("resnet18")
    args = argparse.Namespace(arch="resnet18", num_classes=None, labels=None, mean="0.5",
                              std=None, input_size=None, channel_order=None, description=None,
                              resize_shorter="300", input_shape=None, quiet=False)
    engine.cli._conversion_metadata(args, engine.cli._convert_options(args), model)
    prep = model.metadata["preprocessing"]
    assert prep["resize_shorter"] == 300 and prep["mean"] == [0.5] * 3
    args.resize_shorter = "200"
    with pytest.raises(engine.EngineError, match="smaller than the 224x224 center crop"):
        engine.cli._conversion_metadata(args, engine.cli._convert_options(args),
                                        zoo.get("resnet18"))


def test_summary_shows_labels_and_preprocessing(capsys):
    path = engine.cli._data_path(engine.cli.DEFAULT_MODEL)
    assert main(["summary", path]) == 0
    out = capsys.readouterr().out
    assert "labels: 10 (" in out and "image preprocessing:" in out


def test_hostile_resize_shorter_is_refused():
    with pytest.raises(ValueError, match="resize_shorter"):
        engine.metadata.check_metadata({"preprocessing": {"input_size": [224, 224],
                                                          "resize_shorter": 100}})
    with pytest.raises(engine.ModelFormatError, match="resize_shorter"):
        engine.inputs.parse_preprocessing({"input_size": [8, 8], "resize_shorter": 2**40},
                                  (1, 3, 8, 8))


# -- many inputs: folders, globs, lists -----------------------------------------------------

def test_folder_run_writes_every_row_in_order_and_counts_skips(tmp_path, photo_dir, capsys,
                                                                small_model):
    model = small_model
    out, raw = tmp_path / "preds.csv", tmp_path / "raw.npy"
    code = main(["run", model, str(photo_dir), "--batch", "4", "--top", "2", "--output",
                 str(out), "--raw", str(raw), "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 3                          # something was skipped: not a silent success
    assert "skipped" in err and "broken.jpg" in err and "z_two.npy" in err
    assert "12 of 14 inputs" in err and "2 skipped" in err
    import csv
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["path", "label1", "prob1", "label2", "prob2"]
    names = [os.path.basename(r[0]) for r in rows[1:]]
    assert names == [f"img{i:02d}.png" for i in range(11)] + ["z_sample.npy"]
    outs = np.load(raw)
    assert outs.shape == (12, 5)
    # each row is what one run on that single input gives
    m = engine.load(model)
    sess = engine.Session(m, threads=1)
    for r, o in zip(rows[1:], outs):
        x = engine.inputs.read_inputs([r[0]], m)
        np.testing.assert_allclose(sess.run(x)[0][0], o, rtol=1e-5, atol=1e-6)
        p = engine.inputs.probabilities(o[None], False)[0]
        assert r[1] == "abcde"[int(np.argmax(p))]
        assert abs(float(r[2]) - p.max()) < 1e-5


def test_glob_and_list_file_inputs_and_jsonl(tmp_path, photo_dir, capsys, small_model):
    import json
    model = small_model
    lst = tmp_path / "list.txt"
    lst.write_text("# two photos\nphotos/img03.png\n\nphotos/img07.png\n")
    out = tmp_path / "p.jsonl"
    assert main(["run", model, str(lst), str(photo_dir / "img1*.png"), "--output", str(out),
                 "--top", "1", "--quiet"]) == 0
    recs = [json.loads(line) for line in open(out)]
    assert [os.path.basename(r["path"]) for r in recs] == ["img03.png", "img07.png",
                                                            "img10.png"]
    assert all(len(r["top"]) == 1 and r["top"][0]["label"] in "abcde" for r in recs)
    assert "3 of 3 inputs" in capsys.readouterr().err


@pytest.mark.parametrize("args, says", [
    (["--output", "{t}/p.txt"], "name a .csv or .jsonl file"),
    (["--raw", "{t}/r.csv"], "name a .npy file"),
    (["--batch", "0"], "--batch must be an int from 1"),
])
def test_folder_run_option_errors(tmp_path, photo_dir, capsys, args, says, small_model):
    model = small_model
    args = [a.replace("{t}", str(tmp_path)) for a in args]
    assert main(["run", model, str(photo_dir)] + args) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "p.txt").exists()


def test_empty_folder_and_pattern_are_named(tmp_path, capsys, small_model):
    model = small_model
    (tmp_path / "empty").mkdir()
    assert main(["run", model, str(tmp_path / "empty")]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert main(["run", model, str(tmp_path / "nothing*.png")]) == 2
    assert "matches no file" in capsys.readouterr().err


def test_allow_nonfinite_runs_with_a_warning(tmp_path, capsys):
    x = np.load(engine.cli._data_path(engine.cli.DEFAULT_SAMPLES))[:1].copy()
    x[0, 0, 5, 7] = np.nan
    p = tmp_path / "nan.npy"
    np.save(p, x)
    assert main(["run", DEFAULT, str(p), "--repeat", "1"]) == 2
    assert "1 NaN or infinite value; inputs must be finite numbers (--allow-nonfinite" in \
        capsys.readouterr().err
    assert main(["run", DEFAULT, str(p), "--repeat", "1", "--allow-nonfinite"]) == 0
    out = capsys.readouterr()
    assert "warning:" in out.err and "running them anyway" in out.err
    assert "nan" in out.out                  # the probabilities say what happened


def test_npy_of_another_type_is_converted_and_said_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(engine.inputs, "_CONVERTED", set())
    x = np.load(engine.cli._data_path(engine.cli.DEFAULT_SAMPLES))[:2]
    np.save(tmp_path / "a.npy", x.astype(np.float64))
    np.save(tmp_path / "b.npy", x.astype(np.float64))
    np.save(tmp_path / "c.npy", (x * 10).astype(np.int64))
    assert main(["run", DEFAULT, str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                 str(tmp_path / "c.npy"), "--repeat", "1"]) == 0
    err = capsys.readouterr().err
    assert err.count("holds float64 values") == 1 and err.count("holds int64 values") == 1
    assert "converted to float32" in err


def test_folder_rows_are_exactly_the_sessions_outputs_and_progress_shows(
        tmp_path, photo_dir, small_model, monkeypatch):
    pytest.importorskip("tqdm")
    import io
    import engine.batch
    m = engine.load(small_model)
    sess = engine.Session(m, threads=1)
    files = sorted(str(p) for p in photo_dir.glob("img*.png"))
    read = lambda p: engine.inputs.read_one(p, m)            # noqa: E731

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    for batch in (1, 4):
        err = Terminal()
        monkeypatch.setattr(sys, "stderr", err)
        raw = tmp_path / f"raw{batch}.npy"
        s = engine.batch.run_many(sess, m, files, read, batch=batch, raw=str(raw),
                                  output=str(tmp_path / "p.csv"))
        assert s["done"] == len(files) and not s["skipped"]
        assert f"{len(files)}/{len(files)}" in err.getvalue() and "img/s" in err.getvalue()
        # each slot of `batch` files gives what Session.run gives on those files, bit for bit
        want = np.concatenate([sess.run(np.stack([read(f) for f in files[i:i + batch]]))[0]
                               for i in range(0, len(files), batch)])
        np.testing.assert_array_equal(np.load(raw), want)
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    engine.batch.run_many(sess, m, files, read, batch=4, quiet=True,
                          output=str(tmp_path / "q.csv"))
    assert "img/s" not in quiet.getvalue()


def test_output_cut_short_by_the_reader_is_quiet(tmp_path):
    """engine summary MODEL | head: the reader leaves early; no BrokenPipeError traceback."""
    import subprocess
    err = tmp_path / "err.txt"
    cmd = f"'{sys.executable}' -m engine summary resnet50 2>'{err}' | head -1"
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("layer")
    assert err.read_text() == ""
