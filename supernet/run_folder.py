"""A run folder belongs to one run: `search` and `retrain` claim theirs before writing anything.

Writing a second run into a folder that holds another mixes their files (the second run's
``arch.yaml`` beside the first's ``last.ckpt``, two runs' ``alpha_history.jsonl`` concatenated,
one model's ``metrics.json`` under another's ``arch.yaml``). So a folder that holds a run's files
is refused unless the run is resumed from one of its checkpoints (``--ckpt_path``) or replaced
(``--overwrite``, which first removes the old run's files and nothing else).

``run.json`` records which command made the folder, with what arguments, and whether it finished
(``status``: running | done | failed), so that a half-finished run is never read as a result.
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from supernet.errors import UserError
from supernet.outputs import atomic_write_json

MARKER = "run.json"
# what `search` and `retrain` (and their loggers) write into a run folder
RUN_FILES = (
    MARKER,
    "checkpoints",
    "arch.yaml",
    "search.json",
    "metrics.json",
    "tokenizer.json",
    "alpha_history.jsonl",
    "alphas",
    "config.yaml",
    "wandb",
    "lightning_logs",
    "csv",
)
RUN_GLOBS = ("arch_epoch_*.yaml",)


def run_files(out: Path) -> list[Path]:
    """The files and folders of a run inside ``out`` (nothing else the user keeps there)."""
    if not out.is_dir():
        return []
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    for pattern in RUN_GLOBS:
        found.extend(sorted(out.glob(pattern)))
    return found


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def claim(
    out: str | Path,
    command: str,
    resume_from: str | None = None,
    overwrite: bool = False,
    argv: list[str] | None = None,
) -> Path:
    """Make ``out`` this run's folder, or refuse (``UserError``) when it holds another run.

    Allowed: a new or empty folder (or one holding only files that are not a run's); a resume
    (``resume_from``, a checkpoint that must exist, from this folder); ``overwrite`` of a supernet
    run (one with ``run.json``: its files are removed first; a folder holding run-like files without
    it, e.g. another tool's ``lightning_logs``, is refused, never emptied). Writes ``run.json``
    with ``status: running``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    previous = read_marker(out)
    existing = run_files(out)
    listed = f"{', '.join(p.name for p in existing[:4])}{' ...' if len(existing) > 4 else ''}"
    if existing and previous is None:  # not a supernet run: nothing here is ours to remove
        raise UserError(
            f"{out} holds files that are not a supernet run's ({listed}; no {MARKER}): choose another --out"
        )
    if resume_from is not None:
        if not Path(resume_from).is_file():
            raise UserError(f"--ckpt_path {resume_from}: no such checkpoint")
        if previous and previous.get("command") not in (None, command):
            raise UserError(
                f"--ckpt_path {resume_from}: {out} holds a `{previous['command']}` run, not a `{command}` run"
            )
        if existing and not _inside(Path(resume_from), out) and not overwrite:
            raise UserError(
                f"--ckpt_path {resume_from} is another run's checkpoint, and {out} holds a run of its own: "
                "resume into the checkpoint's own folder, choose another --out, or replace this one with --overwrite"
            )
        if existing and not _inside(Path(resume_from), out):
            _remove(existing)
    elif existing and not overwrite:
        raise UserError(
            f"{out} already holds a `{previous['command']}` run ({previous.get('status', 'unknown')}): {listed}. "
            f"Resume it with --ckpt_path {out / 'checkpoints' / 'last.ckpt'}, replace it with --overwrite, "
            "or choose another --out"
        )
    elif existing:  # overwrite: the old run's files go, the user's other files stay
        _remove(existing)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "argv": list(sys.argv[1:] if argv is None else argv),
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if resume_from is not None:
        record["resumed_from"] = str(resume_from)
        record["first_started"] = (previous or {}).get("first_started") or (previous or {}).get("started")
    atomic_write_json(out / MARKER, record)
    return out


def _remove(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def finish(out: str | Path, **extra) -> None:
    """Mark the run in ``out`` as done (its results are complete)."""
    out = Path(out)
    record = read_marker(out) or {}
    record.update(status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
    atomic_write_json(out / MARKER, record)


@contextmanager
def failing(out: str | Path, is_writer: bool = True):
    """Mark the run failed when the block raises (the error still propagates)."""
    try:
        yield
    except BaseException as error:
        if is_writer:
            fail(out, error)
        raise


def fail(out: str | Path, error: BaseException) -> None:
    """Mark the run in ``out`` as failed, with the reason: its files are not a result."""
    out = Path(out)
    if not (out / MARKER).is_file():
        return
    record = read_marker(out) or {}
    message = " ".join(str(error).split()) or type(error).__name__
    record.update(status="failed", error=message, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_json(out / MARKER, record)


def data_summary(datamodule, model) -> dict:
    """What the run's data checks found: bad audio lines dropped, CTC-infeasible utterances."""
    report = getattr(datamodule, "data_report", None) or {}
    problems = list(report.get("problems", []))
    return {
        "audio": {k: v for k, v in report.items() if k != "problems"} | {"problems": problems[:20]},
        "ctc": getattr(model, "ctc_report", None),
    }


def read_marker(out: Path) -> dict | None:
    import json

    path = out / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def fit_seconds(trainer, seconds: float) -> float:
    """``seconds`` (this process's fit) plus the training time of the segments before a resume,
    which Lightning's Timer (present under ``--trainer.max_time``) restores from the checkpoint as
    its offset. Without a Timer a resumed run counts only its last segment."""
    from pytorch_lightning.callbacks import Timer

    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    return seconds + float(getattr(timer, "_offset", 0.0) or 0.0)
