"""scripts/zero_cost.py: proxies of a tiny network at initialisation, and each proxy ranked in its
fixed direction (made-up figures; the real ones need the retrained reports and a corpus)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import zero_cost  # noqa: E402

from supernet.archspec import ArchSpec  # noqa: E402

ROOT = Path(__file__).parent.parent


def _tiny_spec():
    spec = ArchSpec.from_yaml(ROOT / "supernet/configs/arch/tdnn_d.yaml")
    return ArchSpec.from_dict({**spec.to_dict(), "dim": 16})


def _batch(frames=40, features=80, vocab=6):
    torch.manual_seed(0)
    return {
        "features": torch.randn(2, frames, features),
        "feature_lengths": torch.tensor([frames, frames - 8]),
        "targets": torch.randint(1, vocab, (2, 4)),
        "target_lengths": torch.tensor([4, 3]),
    }


def test_proxies_are_finite_repeatable_and_count_the_parameters():
    spec = _tiny_spec()
    first = zero_cost.proxies(spec, [_batch()], vocab=6)
    again = zero_cost.proxies(spec, [_batch()], vocab=6)
    assert first == again  # seeded initialisations
    assert all(torch.isfinite(torch.tensor(v)) and v > 0 for v in first.values())
    torch.manual_seed(0)
    from supernet.derived import DerivedNet

    assert first["params"] == sum(p.numel() for p in DerivedNet(spec, 6).parameters())
    # two batches: the loss sums over them, the gradients add up
    twice = zero_cost.proxies(spec, [_batch(), _batch()], vocab=6)
    assert twice["init_loss"] == pytest.approx(2 * first["init_loss"], rel=1e-5)
    assert twice["grad_norm"] == pytest.approx(2 * first["grad_norm"], rel=1e-4)


def test_each_proxy_ranks_in_its_own_direction():
    cer = {"a": 0.20, "b": 0.25, "c": 0.30}
    # a is best by every proxy read in its literature direction: the most gradient and parameters,
    # the lowest loss at initialisation
    measured = {
        "a": {"grad_norm": 3.0, "snip": 3.0, "init_loss": 1.0, "params": 300.0},
        "b": {"grad_norm": 2.0, "snip": 2.0, "init_loss": 2.0, "params": 200.0},
        "c": {"grad_norm": 1.0, "snip": 1.0, "init_loss": 3.0, "params": 100.0},
    }
    assert zero_cost.taus(measured, cer) == pytest.approx({k: 1.0 for k in zero_cost.MORE_IS_BETTER})
