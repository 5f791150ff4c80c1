"""The README's Python example runs as written."""

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
