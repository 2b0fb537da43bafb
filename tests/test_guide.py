"""docs/guide.md's Python walk-through runs as written (in an empty folder)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_the_guides_python_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(GUIDE.read_text())
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    exec(compile(blocks[0], str(GUIDE), "exec"), {"__name__": "guide"})
    out = capsys.readouterr().out
    assert "chosen: {" in out and "CPU latency" in out
    assert re.search(r"test\w*: WER \d\.\d{3}  CER \d\.\d{3}", out)
    assert (tmp_path / "runs" / "guide" / "derived" / "metrics.json").is_file()
    assert os.listdir(tmp_path / "runs" / "guide" / "search" / "checkpoints") == ["last.ckpt"]


def test_public_names_resolve_and_none_is_shadowed_by_a_submodule():
    import importlib.util

    import supernet

    for name in supernet.__all__:
        if name == "__version__":
            continue
        # a submodule of the same name would replace the export once anything imports it
        assert importlib.util.find_spec(f"supernet.{name}") is None, name
        assert getattr(supernet, name) is not None
