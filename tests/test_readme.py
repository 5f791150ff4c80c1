"""The README's Python examples run as written (```python blocks); the ```py blocks need
what a test cannot have (a Ray cluster, cloud storage: tests/test_ray.py runs the same calls
on a local cluster) and are only compiled."""

import os
import re


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    blocks = re.findall(r"```python\n(.*?)```", open(readme).read(), re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert "default_threads" in capsys.readouterr().out
    sketches = re.findall(r"```py\n(.*?)```", open(readme).read(), re.S)
    for code in sketches:
        compile(code, "README.md", "exec")
    assert sketches
