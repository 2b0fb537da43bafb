"""Running a study's searches and retrains as the ordinary commands, skipping finished ones.

A run folder whose ``run.json`` says ``status: done`` is a result and is skipped (after checking
that it ran with the same arguments); an interrupted one resumes from its ``last.ckpt``; one that
never got a checkpoint starts over (``--overwrite``). With ``parallel`` 1 the commands run in this
process (``supernet.commands.search.main``, as ``supernet demo`` does); with more, as that many
``python -m supernet`` subprocesses at a time, each logging to ``RUN/study.log`` and each given its
share of the CPU threads (and, on a host with several GPUs, one GPU).

A study stopped by SIGTERM (``timeout``, a batch scheduler's preemption, ``kill``) terminates its
running subprocesses and starts no more: otherwise they would run on as orphans and race the
resumed study's runs for the same folders. Each keeps the checkpoint of its last epoch.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from supernet import run_folder
from supernet.archspec import ArchSpec
from supernet.errors import UserError
from supernet.study.plan import Run, arch_key

# arguments that say where and how a run started, not what it computes
PLACE_FLAGS = ("--out", "--ckpt_path", "--overwrite")
STOP_WAIT_S = 60  # how long a terminated run may take to exit before it is killed


class _Children:
    """The running subprocesses of a stage, and whether the study is stopping."""

    def __init__(self) -> None:
        self.live: set[subprocess.Popen] = set()
        self.stopping = False
        self.lock = threading.Lock()

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen | None:
        with self.lock:
            if self.stopping:
                return None
            child = subprocess.Popen(argv, **kwargs)
            self.live.add(child)
            return child

    def done(self, child: subprocess.Popen) -> None:
        with self.lock:
            self.live.discard(child)

    def stop(self) -> None:
        """Terminate every child, then kill those still running ``STOP_WAIT_S`` later (one deadline
        for all of them)."""
        with self.lock:
            self.stopping = True
            children = list(self.live)
        for child in children:
            child.terminate()
        deadline = time.monotonic() + STOP_WAIT_S
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()


@contextmanager
def _stopped_with_us(children: _Children):
    """On SIGTERM: terminate the children, start no more, exit (status 143, as a terminated process)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def on_term(signum, frame):
        if stopping.is_set():  # a second SIGTERM while the first is handled (the handler re-enters)
            return
        stopping.set()
        print(
            "[study] stopped (SIGTERM): terminating the running runs; run the study again to resume",
            flush=True,
        )
        children.stop()
        raise SystemExit(128 + signum)

    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    if "--arch" in run.argv and (run.out / "arch.yaml").is_file():  # same file name, other network?
        wanted = run.argv[run.argv.index("--arch") + 1]
        if arch_key(ArchSpec.load(run.out / "arch.yaml")) != arch_key(ArchSpec.load(wanted)):
            raise UserError(
                f"{run.out} trained another network than {wanted} now holds (a pick that changed, or a "
                "folder of an older layout): run the study with --overwrite, or choose another --out"
            )
    return True


def command_argv(run: Run) -> list[str]:
    """The run's arguments, with where to write and, for an interrupted run, where to resume from
    (``select`` resumes by itself from the scores it kept)."""
    argv = [*run.argv, "--out", str(run.out)]
    if run.command == "select":
        return argv
    last = run.checkpoint
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


def command_line(run: Run) -> list[str]:
    """The subprocess that runs ``run``."""
    return [sys.executable, "-m", "supernet", run.command, *command_argv(run)]


def _subprocess(
    run: Run, slots: queue.Queue, env: dict[str, str], gpus: int, children: _Children
) -> str | None:
    slot = slots.get()  # a slot is one GPU of several; it also keeps `parallel` runs at a time
    try:
        if children.stopping:  # checked again under the lock; this spares the folder and its log
            return "not started: the study was stopped"
        run.out.mkdir(parents=True, exist_ok=True)
        log = run.out / "study.log"  # not a run's file: the command's claim of the folder keeps it
        gpu = {"CUDA_VISIBLE_DEVICES": str(slot % gpus)} if gpus > 1 else {}
        with open(log, "a") as handle:  # appended: a resumed run keeps the log of its earlier part
            child = children.start(
                command_line(run), stdout=handle, stderr=subprocess.STDOUT, env={**env, **gpu}
            )
            if child is None:
                return "not started: the study was stopped"
            try:
                code = child.wait()
            finally:
                children.done(child)
        return None if code == 0 else f"exit status {code}, see {log}"
    finally:
        slots.put(slot)


def execute(runs: list[Run], parallel: int, what: str, starting=None) -> int:
    """Run every unfinished run of ``runs`` (returns how many it started); a ``UserError`` listing
    the failures once all ended. ``starting(n, of)`` hears how many of the ``of`` runs will run,
    before any does (a record that a call stopped midway still leaves)."""
    todo = [run for run in runs if not is_done(run)]
    print(f"[study] {what}: {len(runs) - len(todo)} of {len(runs)} finished already, {len(todo)} to run")
    if todo and starting:
        starting(len(todo), len(runs))
    failures = {}
    if parallel <= 1:
        for i, run in enumerate(todo):
            print(f"[study] {run.command} {i + 1}/{len(todo)}: {run.out}")
            failures[run.out] = _in_process(run)
    else:
        threads = max(1, (os.cpu_count() or 1) // max(1, min(parallel, len(todo))))  # a lone run: every core
        env, gpus = {"OMP_NUM_THREADS": str(threads), **os.environ}, _gpus()
        slots: queue.Queue = queue.Queue()
        for slot in range(parallel):
            slots.put(slot)
        children = _Children()
        with _stopped_with_us(children), ThreadPoolExecutor(parallel) as pool:
            results = pool.map(lambda run: _subprocess(run, slots, env, gpus, children), todo)
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
    return len(todo)


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()
