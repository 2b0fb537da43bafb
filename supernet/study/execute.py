"""Running a study's searches and retrains as the ordinary commands, skipping finished ones.

A run folder whose ``run.json`` says ``status: done`` is a result and is skipped (after checking
that it ran with the same arguments); an interrupted one resumes from its ``last.ckpt``; one that
never got a checkpoint starts over (``--overwrite``). With ``parallel`` 1 the commands run in this
process (``supernet.commands.search.main``, as ``supernet demo`` does); with more, as that many
``python -m supernet`` subprocesses at a time, each logging to ``RUN/study.log`` and each given its
share of the CPU threads (and, on a host with several GPUs, one GPU).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from supernet import run_folder
from supernet.errors import UserError
from supernet.study.plan import Run

# arguments that say where and how a run started, not what it computes
PLACE_FLAGS = ("--out", "--ckpt_path", "--overwrite")


def _what(argv: list[str]) -> list[str]:
    """``argv`` without its ``PLACE_FLAGS`` (each with its value)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in PLACE_FLAGS:
            skip = True
        elif arg.split("=", 1)[0] not in PLACE_FLAGS:
            out.append(arg)
    return out


def is_done(run: Run) -> bool:
    """Whether ``run`` finished; a finished run with other arguments is an error (not a result of
    this study)."""
    marker = run.out / run_folder.MARKER
    if not marker.is_file():
        return False
    record = json.loads(marker.read_text() or "{}")
    if record.get("status") != "done":
        return False
    recorded = _what(list(record.get("argv", []))[1:])
    if recorded != _what(run.argv):
        raise UserError(
            f"{run.out} holds a finished `{record.get('command')}` run with other arguments than this study's "
            "(was the study's YAML edited?): run the study with --overwrite, or choose another --out"
        )
    return True


def command_argv(run: Run) -> list[str]:
    """The run's arguments, with where to write and, for an interrupted run, where to resume from
    (``select`` resumes by itself from the scores it kept)."""
    argv = [*run.argv, "--out", str(run.out)]
    if run.command == "select":
        return argv
    last = run.out / "checkpoints" / "last.ckpt"
    if last.is_file():
        return [*argv, "--ckpt_path", str(last)]
    return [*argv, "--overwrite", "true"] if run_folder.run_files(run.out) else argv


def _in_process(run: Run) -> str | None:
    from supernet.commands.cli import run_command

    try:
        run_command([run.command, *command_argv(run)])
    except Exception as err:  # noqa: BLE001  (reported with the others once the stage is over)
        return " ".join(str(err).split()) or type(err).__name__
    return None


def _subprocess(run: Run, slots: queue.Queue, env: dict[str, str], gpus: int) -> str | None:
    slot = slots.get()  # a slot is one GPU of several; it also keeps `parallel` runs at a time
    try:
        run.out.mkdir(parents=True, exist_ok=True)
        log = run.out / "study.log"  # not a run's file: the command's claim of the folder keeps it
        gpu = {"CUDA_VISIBLE_DEVICES": str(slot % gpus)} if gpus > 1 else {}
        with open(log, "w") as handle:
            done = subprocess.run(
                [sys.executable, "-m", "supernet", run.command, *command_argv(run)],
                stdout=handle, stderr=subprocess.STDOUT, env={**env, **gpu},
            )  # fmt: skip
        return None if done.returncode == 0 else f"exit status {done.returncode}, see {log}"
    finally:
        slots.put(slot)


def execute(runs: list[Run], parallel: int, what: str) -> None:
    """Run every unfinished run of ``runs``; a ``UserError`` listing the failures once all ended."""
    todo = [run for run in runs if not is_done(run)]
    print(f"[study] {what}: {len(runs) - len(todo)} of {len(runs)} finished already, {len(todo)} to run")
    failures = {}
    if parallel <= 1:
        for i, run in enumerate(todo):
            print(f"[study] {run.command} {i + 1}/{len(todo)}: {run.out}")
            failures[run.out] = _in_process(run)
    else:
        threads = max(1, (os.cpu_count() or 1) // parallel)
        env, gpus = {"OMP_NUM_THREADS": str(threads), **os.environ}, _gpus()
        slots: queue.Queue = queue.Queue()
        for slot in range(parallel):
            slots.put(slot)
        with ThreadPoolExecutor(parallel) as pool:
            results = pool.map(lambda run: _subprocess(run, slots, env, gpus), todo)
            for run, failure in zip(todo, results):
                print(f"[study] {run.command} {'failed' if failure else 'done'}: {run.out}")
                failures[run.out] = failure
    failed = {out: why for out, why in failures.items() if why}
    if failed:
        listed = "; ".join(f"{out}: {why}" for out, why in list(failed.items())[:3])
        raise UserError(
            f"{len(failed)} of {len(todo)} {what} run(s) failed ({listed}). Finished runs are kept: "
            "fix the cause and run the study again"
        )


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()
