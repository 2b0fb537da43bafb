"""Where a retrain step waits for the GPU, with the divergence watch and without (diagnoses
tests/test_nonfinite.py::test_watching_for_divergence_adds_no_host_wait_to_a_gpu_step[None])."""

from supernet.asr_module import ASRModule
from supernet.divergence import FiniteWatch
from tests.test_nonfinite import TINY_ARCH, VOCAB, SyncCounter, loader, trainer


def run():
    sites = SyncCounter()
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
