"""Do training-free scores rank the retrained networks better than the supernet? (issue 16: its
Kendall tau stays near 0.2 where 0.5 is the target)

Zero-cost proxies from the NAS literature, each network at its initialisation, summed over a few
train batches of CTC loss and averaged over two initialisation seeds:
- ``grad_norm``: the L2 norm of the loss gradient over all weights (Abdelfattah et al. 2021; more
  is better);
- ``snip``: sum of |weight x gradient| (Lee et al. 2019, as a proxy in Abdelfattah et al.; more is
  better);
- ``init_loss``: the CTC loss itself (less is better);
- ``params``: the parameter count, the baseline proxies are judged against (more is better).
Each is turned into a ranking in its literature direction, fixed before looking: no sign is chosen
from the data. Runs on a CPU in about a second a network.

    python scripts/zero_cost.py --data data/demo --out docs/study/h200_three/zero_cost \
        docs/study/h200_three/retrain_length/report_24_epochs.json docs/study/h200_three/finalists/retrain_archs.json ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent / "device"))  # study_pieces
from study_pieces import retrained  # noqa: E402

from losses.ctc import ctc_loss  # noqa: E402
from supernet.archspec import ArchSpec  # noqa: E402
from supernet.data.datamodule import SpeechDataModule  # noqa: E402
from supernet.derived import DerivedNet  # noqa: E402
from supernet.outputs import atomic_write_json  # noqa: E402
from supernet.study.rank import kendall_tau  # noqa: E402

MORE_IS_BETTER = {"grad_norm": True, "snip": True, "init_loss": False, "params": True}


def proxies(
    spec: ArchSpec, batches: list[dict], vocab: int, seeds: tuple[int, ...] = (0, 1)
) -> dict[str, float]:
    """The proxies of one network, each the mean over ``seeds`` of its initialisation (dropout off:
    the architecture's, not one draw of its masks)."""
    spec = ArchSpec.from_dict({**spec.to_dict(), "dropout": 0.0})
    found: dict[str, list[float]] = {k: [] for k in MORE_IS_BETTER}
    for seed in seeds:
        torch.manual_seed(seed)
        net = DerivedNet(spec, vocab).train()
        loss_sum = 0.0
        for batch in batches:
            log_probs, lengths = net(batch["features"], batch["feature_lengths"])
            loss = ctc_loss(log_probs, lengths, batch["targets"], batch["target_lengths"])
            loss.backward()  # gradients add up over the batches
            loss_sum += float(loss)
        grads = [(p, p.grad) for p in net.parameters() if p.grad is not None]
        found["grad_norm"].append(sum(float(g.square().sum()) for _, g in grads) ** 0.5)
        found["snip"].append(sum(float((p * g).abs().sum()) for p, g in grads))
        found["init_loss"].append(loss_sum)
        found["params"].append(float(sum(p.numel() for p in net.parameters())))
    return {k: sum(v) / len(v) for k, v in found.items()}


def taus(measured: dict[str, dict[str, float]], cer: dict[str, float]) -> dict[str, float | None]:
    """Kendall tau of each proxy's ranking (best first, in its literature direction) against CER."""
    names = sorted(measured)
    return {
        k: kendall_tau([-measured[n][k] if more else measured[n][k] for n in names], [cer[n] for n in names])
        for k, more in MORE_IS_BETTER.items()
    }


def train_batches(data: Path, count: int, max_frames: int) -> tuple[list[dict], int]:
    """The first ``count`` train batches (features, unaugmented) and the vocabulary size."""
    module = SpeechDataModule(str(data), max_frames=max_frames, num_workers=0, spec_augment=False, seed=0)
    module.setup("fit")
    batches = []
    for batch in module.train_dataloader():
        batches.append(module.featurize(batch, augment=False))
        if len(batches) == count:
            break
    return batches, len(module.tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", type=Path, nargs="+", help="reports whose rows hold retrained networks")
    parser.add_argument("--data", type=Path, required=True, help="a corpus to draw the batches from")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--max-frames", type=int, default=4000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    specs, cer, _ = retrained(*args.reports)
    batches, vocab = train_batches(args.data, args.batches, args.max_frames)
    measured = {}
    for index, (name, spec) in enumerate(sorted(specs.items()), 1):
        measured[name] = proxies(spec, batches, vocab)
        print(f"[{index}/{len(specs)}] {name}", flush=True)
    result = {"data": str(args.data), "batches": args.batches, "networks": len(measured),
              "taus": taus(measured, cer), "proxies": measured, "retrained_dev_cer": cer}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "zero_cost.json", result)
    print(
        f"\nKendall tau against the retrained dev CER over {len(measured)} networks (each proxy in its direction):"
    )
    for k, tau in result["taus"].items():
        print(f"  {k:10s} {'-' if tau is None else f'{tau:.3f}'}")


if __name__ == "__main__":
    main()
