"""scripts/device/route_seed.sh's flow with the GPU work faked (a ``python3`` on PATH that writes
what each script would): what a call keeps in $OUT, and that ``PICKS_ONLY=1`` stops before the
retrains while ``SIZE=1`` retrains the size pick beside the route's. Device time is scarce, so a
call that keeps nothing, or retrains what it was told not to, costs a session's work."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent

FAKE_PYTHON = r"""#!/usr/bin/env bash
# the scripts route_seed.sh runs, by what each leaves behind; anything else (pip, imports) succeeds
case "$1" in
  scripts/device/route_seed.py)
    work=$3 seed=$4
    echo "$@" > "$FAKE_LOG/route_args"
    mkdir -p "$work/arch" "$work/select/uniform-s$seed-any-predictor"
    echo '{"best": []}' > "$work/select/uniform-s$seed-any-predictor/select.json"
    echo "name: uniform-s$seed-any-predictor-big" > "$work/arch/uniform-s$seed-any-predictor-big.yaml"
    echo "the supernet and its select (faked)" ;;
  scripts/size_repick.py)
    while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
    mkdir -p "$out" && echo "name: size" > "$out/uniform-sX-any-predictor-size-big.yaml"
    echo "  written: $out/uniform-sX-any-predictor-size-big.yaml" ;;
  scripts/device/retrain_archs.py)
    shift 3; echo "$@" > "$FAKE_LOG/retrained" ;;
esac
exit 0
"""


@pytest.fixture
def fake(tmp_path):
    """A PATH whose python3 is the fake, a seed of this test's own (route_seed.sh works in
    /tmp/route_sSEED), and the folder the fake's retrain writes its arguments to."""
    if shutil.which("timeout") is None or shutil.which("flock") is None:
        pytest.skip("needs coreutils' timeout and util-linux's flock")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    seed = f"test{os.getpid()}"
    yield {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path)}, seed, tmp_path
    shutil.rmtree(f"/tmp/route_s{seed}", ignore_errors=True)
    Path(f"/tmp/route_s{seed}.log").unlink(missing_ok=True)


def _call(env, seed, out, **flags):
    return subprocess.run(
        ["bash", "scripts/device/route_seed.sh", seed, "300"],
        cwd=REPO, env={**os.environ, **env, "OUT": str(out), "BUDGET": "big", **flags},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_picks_only_keeps_the_picks_and_retrains_nothing(fake):
    env, seed, tmp = fake
    done = _call(env, seed, tmp / "out", SIZE="1", PICKS_ONLY="1")
    assert done.returncode == 0, done.stderr
    out = tmp / "out"
    assert (out / "arch" / f"uniform-s{seed}-any-predictor-big.yaml").is_file()
    assert (out / "arch_size" / "uniform-sX-any-predictor-size-big.yaml").is_file()
    assert (out / "select.json").is_file() and "written" in (out / "size_repick.txt").read_text()
    assert "not retrained (PICKS_ONLY)" in done.stdout and not (tmp / "retrained").exists()


def test_size_retrains_both_picks(fake):
    env, seed, tmp = fake
    done = _call(env, seed, tmp / "out", SIZE="1")
    assert done.returncode == 0, done.stderr
    retrained = (tmp / "retrained").read_text()
    assert f"uniform-s{seed}-any-predictor-big.yaml" in retrained
    assert "uniform-sX-any-predictor-size-big.yaml" in retrained


def test_epochs_and_option_both_reach_the_route(fake):
    """A heavier recipe held to 2x by a shorter supernet: the draw weights and the epochs together."""
    env, seed, tmp = fake
    done = _call(env, seed, tmp / "out", PICKS_ONLY="1", EPOCHS="15", OPTION="model.method_options={}")
    assert done.returncode == 0, done.stderr
    args = (tmp / "route_args").read_text()
    assert "--option model.method_options={} --option trainer.max_epochs=15" in args


def _pack_out(env, out):
    """setup.sh's ``pack_out`` (sourced with the fake python3, so nothing is installed) in ``out``."""
    script = "source scripts/device/setup.sh >/dev/null && pack_out"
    return subprocess.run(["bash", "-c", script], cwd=REPO, env={**os.environ, **env, "OUT": str(out)},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize("files", [8, 10])
def test_pack_out_keeps_every_file_within_the_devices_eight(fake, files):
    env, _, tmp = fake
    out = tmp / "out"
    for i in range(files):
        (out / f"s{i % 2}" / "arch").mkdir(parents=True, exist_ok=True)
        (out / f"s{i % 2}" / "arch" / f"f{i}.yaml").write_text(f"{i}\n")
    assert _pack_out(env, out).returncode == 0
    kept = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    if files <= 8:
        assert len(kept) == files  # left as they are
        return
    assert kept == ["out.tar"]
    unpacked = tmp / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(out / "out.tar"), "-C", str(unpacked)], check=True)
    assert (unpacked / "s1" / "arch" / "f9.yaml").read_text() == "9\n"
    assert len([p for p in unpacked.rglob("*") if p.is_file()]) == files
