"""Where a retrain step waits for the GPU, with the divergence watch and without (diagnoses
tests/test_nonfinite.py::test_watching_for_divergence_adds_no_host_wait_to_a_gpu_step[None])."""

import collections
import warnings

import torch

from supernet.asr_module import ASRModule
from supernet.divergence import FiniteWatch
from tests.test_nonfinite import TINY_ARCH, VOCAB, loader, trainer


class Sites(__import__("pytorch_lightning").Callback):
    def __init__(self):
        self.sites = collections.Counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._catch = warnings.catch_warnings(record=True)
        self._seen = self._catch.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        torch.cuda.set_sync_debug_mode(0)
        for w in self._seen:
            if "synchroniz" in str(w.message):
                self.sites[f"step {batch_idx}: {w.filename}:{w.lineno}"] += 1
        self._catch.__exit__(None, None, None)


def run():
    sites = Sites()
    module = ASRModule(TINY_ARCH, vocab=VOCAB, warmup_steps=1)
    trainer(epochs=1, callbacks=[sites], log_every_n_steps=100, accelerator="gpu").fit(
        module, train_dataloaders=loader(12)
    )
    return sites.sites


first = run()  # a fresh process: its first steps may wait once for lazy set-ups
watched = run()
FiniteWatch.record = lambda *args, **kwargs: None
unwatched = run()
print("first:", sum(first.values()), "watched:", sum(watched.values()), "unwatched:", sum(unwatched.values()))
for site in sorted(set(first) | set(watched) | set(unwatched)):
    print(f"  {first[site]:3d} {watched[site]:3d} {unwatched[site]:3d}  {site}")
