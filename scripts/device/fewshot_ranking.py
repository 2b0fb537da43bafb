"""Does splitting the supernet by its plain attention blocks (few-shot NAS, Zhao et al. 2021) rank
the retrained networks where the one supernet does not? (issue 16: tau 0.13; the networks with a
plain attention block, one that ends with its own LayerNorm, rank at 0.16, the others at 0.73)

From the route's trained supernet, one sub-supernet per group of the space (``--split plain``: 0,
1, or 2 or more plain attention blocks; ``attention``: no attention block or some) is trained on
for ``--steps`` steps of uniform single paths drawn within its group only (rejection sampling),
from the supernet's weights each time. Every retrained network is then scored with its group's
sub-supernet as the study scores (dev CTC loss, BatchNorm re-estimated on ``--batches`` train
batches). The control spends the same steps on the whole space (one sub-supernet of everything),
so the split, not the training, is what the two taus compare.

    bash -c 'source scripts/device/setup.sh && python3 scripts/device/fewshot_ranking.py /tmp/fs \
        docs/study/h200_route/latency.json --steps 150 --group route docs/study/h200_route/study.json'
    python scripts/device/fewshot_ranking.py /tmp/fs docs/study/h200_route/latency.json \
        --ckpt CKPT --steps 150 --group route docs/study/h200_route/study.json   # on a CPU

Writes ``$OUT/fewshot_ranking.json``. A script file (spawned corpus workers cannot import '<stdin>').
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from study_pieces import (  # scripts/device
    ranked_group,
    ranking_parser,
    retrained,
    route_supernet,
    write_result,
)

sys.path.insert(0, str(Path(__file__).parents[1]))  # scripts/: the op families' readers
from ranking_breakdown import any_attention, plain_attention  # noqa: E402

from supernet.select.score import SupernetScorer  # noqa: E402
from supernet.study import rank  # noqa: E402

# a network's group: its layers -> a label
SPLITS: dict[str, Callable[[list[str]], int]] = {
    "plain": lambda layers: min(sum(map(plain_attention, layers)), 2),
    "attention": lambda layers: int(any(map(any_attention, layers))),
    "none": lambda layers: 0,
}


def train_group(
    scorer: SupernetScorer, group: Callable[[list[str]], bool], steps: int, lr, seed: int
) -> None:
    """``steps`` single-path steps of the supernet on paths drawn uniformly within ``group`` (the
    search's AdamW at ``lr``, a linear warm-up over the first tenth, its gradient clipping)."""
    module, net, space = scorer.module, scorer.module.net, scorer.space
    draw = random.Random(seed)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = module.weight_adamw(params, lr)
    warmup = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(steps // 10, 1))
    )
    batches = scorer._finetune_batches(steps, [scorer.device] if scorer.device.type == "cuda" else [])
    torch.manual_seed(seed)
    with torch.enable_grad():
        for batch in batches:
            path = space.sample_path(draw)
            while not group(space.derive(path).layers):
                path = space.sample_path(draw)
            net.fix_path(path)
            net.train()
            scorer.weight_step(batch, optimizer, params)
            warmup.step()
    net.zero_grad(set_to_none=True)
    net.eval()


def split_scores(
    scorer: SupernetScorer, paths: dict, key: Callable, steps: int, lr, seed: int
) -> tuple[dict, dict]:
    """Each network's measures with the sub-supernet of its group (``key`` of its layers; one
    sub-supernet per group that holds a network), trained ``steps`` steps from the supernet's
    weights, which are restored after each group; and each network's group."""
    net = scorer.module.net
    saved = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    group_of = {name: key(scorer.space.derive(path).layers) for name, path in paths.items()}
    groups: dict[int, dict] = {}
    for name, path in paths.items():
        groups.setdefault(group_of[name], {})[name] = path
    scores = {}
    for label, members in sorted(groups.items()):
        began = time.perf_counter()
        train_group(scorer, lambda layers, label=label: key(layers) == label, steps, lr, seed)
        scores.update({name: scorer.measure(path) for name, path in members.items()})
        net.load_state_dict(saved)
        print(
            f"  group {label}: {len(members)} networks, {steps} steps, {time.perf_counter() - began:.1f} s",
            flush=True,
        )
    return scores, group_of


def main() -> None:
    parser = ranking_parser(__doc__)
    parser.add_argument("--split", choices=("plain", "attention"), default="plain")
    parser.add_argument("--steps", type=int, default=150, help="steps of each sub-supernet")
    parser.add_argument("--lr", type=float, help="default: the search's peak lr")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    last, data, trained_in = route_supernet(args, [])
    scorer = SupernetScorer(last, data, args.batches, split="dev", arch_fraction=0.0, metric="loss",
                            weights="trained")  # fmt: skip
    key = SPLITS[args.split]
    groups = {}
    for name, *reports in args.group:
        specs, cer, budgets = retrained(*map(Path, reports))
        paths = rank.paths_in_space(scorer.space, specs)
        started = time.perf_counter()
        inherited = {n: scorer.measure(path) for n, path in paths.items()}
        print(f"{name}: the split by {args.split}", flush=True)
        split, group_of = split_scores(scorer, paths, key, args.steps, args.lr, args.seed)
        count = len(set(group_of.values()))
        print(f"{name}: the control, {args.steps * count} steps on the whole space", flush=True)
        control, _ = split_scores(scorer, paths, SPLITS["none"], args.steps * count, args.lr, args.seed)
        scores = {
            n: {**{f"inherited_{m}": v for m, v in inherited[n].items()},
                **{f"split_{m}": v for m, v in split[n].items()},
                **{f"control_{m}": v for m, v in control[n].items()}}
            for n in paths if n in cer
        }  # fmt: skip
        measures = tuple(f"{kind}_{m}" for kind in ("inherited", "split", "control") for m in ("loss", "cer"))
        entry = ranked_group(name, reports, scores, cer, budgets, measures, time.perf_counter() - started)
        groups[name] = {**entry, "group_of": group_of}
    write_result("fewshot_ranking.json", {
        "ckpt": str(last), "train_seconds": trained_in, "split": args.split, "steps": args.steps,
        "lr": args.lr, "seed": args.seed, "batches": args.batches, "groups": groups,
    })  # fmt: skip


if __name__ == "__main__":
    main()
