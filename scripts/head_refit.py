"""Is the supernet's score wrong at its shared head? (issue 16: Kendall tau >= 0.5, missed)

The uniform supernet under-rates networks whose last block before the head is a full-rate
conformer (``docs/study/h200_route``: Conformer-S and two random paths, ranked 18th-20th of 20 by
the dev loss, are 3rd, 5th and 16th by their retrained dev CER). A conformer block ends in a LayerNorm, the
residual TDNN blocks most paths end with do not, and the one linear head every path shares was
trained on the mixture. BatchNorm recalibration re-fits a path's statistics, not its head. This
scores each retrained network of the reports with a trained supernet three ways, all from the
same BatchNorm-recalibrated path, on the dev split:

- ``loss``: the study's score (dev CTC loss per token);
- ``head``: the same after the head alone is re-fitted to the path (its other weights frozen):
  ``--steps`` AdamW steps at ``--lr`` over the recalibration's train batches, from the supernet's
  head;
- ``scale``: the same after only a scale of the logits is fitted (a temperature: one number).

Prints each score's Kendall tau against the retrained dev CER (over all networks and within each
budget) and writes ``$OUT/head_refit.json`` (default /tmp/out). Fixed before the run: the two
variants, ``--steps 64``, ``--lr 3e-3``, 8 recalibration batches.

    python scripts/head_refit.py CKPT --data data/study_h200 --group route docs/study/h200_route/study.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "device"))
from study_pieces import ranked_group, retrained, write_result  # noqa: E402

from losses.ctc import ctc_loss  # noqa: E402
from supernet.select.score import SupernetScorer  # noqa: E402
from supernet.study import rank  # noqa: E402

MEASURES = ("loss", "head", "scale")


def head_inputs(scorer: SupernetScorer, batches: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What the head reads for each batch (the path's last layer's output and lengths), in eval mode."""
    net, kept = scorer.module.net, []
    hook = net.head.register_forward_pre_hook(lambda _, args: kept.append((args[0].detach(), args[1])))
    try:
        with torch.no_grad():
            for batch in batches:
                net(batch["features"], batch["feature_lengths"])
    finally:
        hook.remove()
    return kept


def refit(scorer: SupernetScorer, batches: list[dict], variant: str, steps: int, lr: float) -> None:
    """Fits the head (``head``) or a logit scale (``scale``, put into the head's weights) in place."""
    head = scorer.module.net.head
    inputs = head_inputs(scorer, batches)
    scale = torch.zeros((), requires_grad=True)  # log of the logits' scale
    params = [scale] if variant == "scale" else list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    with torch.enable_grad():
        for step in range(steps):
            (x, lengths), batch = inputs[step % len(inputs)], batches[step % len(batches)]
            logits, out_lengths = head(x, lengths)
            log_probs = (logits.float() * scale.exp()).log_softmax(-1)
            loss = ctc_loss(log_probs, out_lengths, batch["targets"], batch["target_lengths"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if variant == "scale":
        with torch.no_grad():
            for p in head.parameters():
                p.mul_(scale.exp())  # a linear head: scaled weights and bias scale the logits


def scores_of(scorer: SupernetScorer, path: dict[str, int], steps: int, lr: float) -> dict[str, float]:
    net = scorer.module.net
    out = {"loss": scorer.measure(path)["loss"]}  # BatchNorm recalibrated once: the head reads none
    saved = copy.deepcopy(net.head.state_dict())
    for variant in ("head", "scale"):
        refit(scorer, scorer.batches_of("train"), variant, steps, lr)
        out[variant] = scorer.measure(path, recalibrate=False)["loss"]
        net.head.load_state_dict(saved)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--data", type=Path, default=Path("data/study_h200"))
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "REPORT"))
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    scorer = SupernetScorer(args.ckpt, args.data, args.batches, split="dev", arch_fraction=0.0, metric="loss",
                            weights="trained", device="cpu")  # fmt: skip
    groups = {}
    for name, *reports in args.group:
        specs, cer, budgets = retrained(*map(Path, reports))
        scores, began = {}, time.perf_counter()
        for network, path in rank.paths_in_space(scorer.space, specs).items():
            scores[network] = scores_of(scorer, path, args.steps, args.lr)
            print(network, {k: round(v, 4) for k, v in scores[network].items()}, flush=True)
        groups[name] = ranked_group(
            name, reports, scores, cer, budgets, MEASURES, time.perf_counter() - began
        )
    write_result(
        "head_refit.json", {"ckpt": str(args.ckpt), "steps": args.steps, "lr": args.lr, "groups": groups}
    )


if __name__ == "__main__":
    main()
