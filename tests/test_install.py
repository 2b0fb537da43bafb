"""A regular (non-editable) install works from any folder: shipped spaces, baselines, latency tables
and default configs travel inside the wheel as package data.

Offline and without pip: the wheel is built in-process by setuptools' PEP 517 backend from a copy
of the project, and installed by unpacking it into a target folder (all a pure-Python wheel's
install does). Commands then run from an empty folder with ``PYTHONPATH=TARGET``; the venv
supplies the dependencies, and the checkout (editable install) must not be what is imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("supernet", "ops", "losses", "callbacks")


def build_wheel(src: Path, out: Path) -> Path:
    """Build the project's wheel from a copy (the checkout gets no build/ or egg-info)."""
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """(target, an empty folder, the wheel's file names)."""
    base = tmp_path_factory.mktemp("install")
    (base / "src").mkdir()
    (base / "dist").mkdir()
    wheel = build_wheel(base / "src", base / "dist")
    target, empty = base / "target", base / "empty"
    empty.mkdir()
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
        names = zf.namelist()
    return target, empty, names


def test_the_wheel_holds_every_module_of_every_subpackage(installed):
    _, _, names = installed
    sources = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    missing = sorted(sources - set(names))
    assert not missing, f"the wheel lacks {len(missing)} modules, e.g. {missing[:5]}"


def test_the_wheel_holds_every_shipped_config(installed):
    _, _, names = installed
    shipped = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "supernet" / "configs").rglob("*") if p.is_file()
    }
    shipped = {name for name in shipped if "__pycache__" not in name}
    assert {"supernet/configs/search.yaml", "supernet/configs/retrain.yaml"} <= shipped
    assert shipped - set(names) == set()


def test_wandb_and_matplotlib_are_extras_of_the_wheel(installed):
    """``pip install supernet`` leaves them out; ``supernet[wandb]``, ``[plots]`` and ``[dev]`` bring them."""
    target, _, names = installed
    [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
    fields = [line.split(": ", 1) for line in (target / metadata).read_text().splitlines() if ": " in line]
    requires = [value for key, value in fields if key == "Requires-Dist"]
    assert {"wandb", "plots", "dev"} <= {value for key, value in fields if key == "Provides-Extra"}
    for package, extra in (("wandb", "wandb"), ("matplotlib", "plots")):
        [line] = [r for r in requires if r.startswith(package)]
        assert f'extra == "{extra}"' in line, line


def test_the_installed_copy_is_imported_and_finds_shipped_files_by_name(installed):
    target, empty, _ = installed
    code = (
        "import importlib.util, supernet\n"
        "print(supernet.__file__)\n"
        "for name in ('ops', 'losses', 'callbacks'): print(importlib.util.find_spec(name).origin)\n"
        "from supernet.archspec import ArchSpec\n"
        "from supernet.latency import LatencyTable\n"
        "import supernet.search.module, supernet.commands.cli\n"
        "print(supernet.search.module.__file__)\n"
        "print(supernet.commands.cli.__file__)\n"
        "from supernet.shipped import default_config\n"
        "print(ArchSpec.load('tdnn_d').source)\n"
        "print(LatencyTable.load('st_nas_cpu').source)\n"
        "print(default_config('search'))\n"
        "print(default_config('retrain'))\n"
    )
    done = run_installed(target, empty, "-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.split()
    assert len(lines) == 10
    for line in lines:
        assert Path(line).resolve().is_relative_to(target.resolve()), f"{line} is not in the installed copy"
        assert Path(line).is_file()


def test_space_info_runs_from_an_empty_folder(installed):
    target, empty, _ = installed
    done = run_installed(target, empty, "-m", "supernet", "space", "info", "st_nas")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "space: st_nas" in done.stdout
    assert str(target / "supernet" / "configs" / "space" / "st_nas.yaml") in done.stdout
    assert list(empty.iterdir()) == []


def test_retrain_reads_its_default_config_from_package_data(installed):
    target, empty, _ = installed
    done = run_installed(target, empty, "-m", "supernet", "retrain", "--arch", "tdnn_d", "--print_config")
    assert done.returncode == 0, done.stderr[-3000:]
    # values only supernet/configs/retrain.yaml sets (Lightning's defaults differ)
    assert "max_epochs: 35" in done.stdout and "arch_fraction: 0.0" in done.stdout
    assert "arch: tdnn_d" in done.stdout
