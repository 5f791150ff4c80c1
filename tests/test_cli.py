"""The engine command line: the README's main job and clean failures."""

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
    (["run", "--threads", "0"], "--threads must be at least 1"),
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
