"""The README's Python example runs as written (on the mock device)."""

import pathlib
import re

import numpy as np

from conftest import write_safetensors

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_readme_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_safetensors(tmp_path / "model.safetensors", [("encoder.weight", w, "F32")])
    monkeypatch.chdir(tmp_path)
    # The mock, whatever this machine has: the example reads host memory.
    monkeypatch.setenv("VRAM_RESIDENCY_FORCE_MOCK", "1")
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    np.testing.assert_array_equal(scope["y"], np.ones(4, dtype=np.float32) @ w.T)
    np.testing.assert_array_equal(scope["t"], w)
