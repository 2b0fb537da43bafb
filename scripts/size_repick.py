"""A select's finalists picked again with their size: the best by the sum of two ranks, the
fine-tuned objective's and the parameter count's (more first), beside the select's own pick (the
fine-tuned objective alone). Why: the supernet scores the larger networks of h200_route's 0.844 ms
budget worse than they retrain, every draw recipe alike, and among the weighted route's picks the
parameter count orders the retrained dev CER at Kendall tau 0.55 (docs/results.md, session 29).
Written for a paired test: both picks of one supernet retrained, so that the supernet's own
seed-to-seed spread drops out of the comparison. A rule is decided by those retrains, not here.

    python scripts/size_repick.py WORK/select/uniform-s0-any-predictor/select.json \
        --space docs/study/h200_route/space.yaml --picks WORK/arch/*.yaml --out WORK/arch_size

Each budget's size pick is written as the route's pick of that budget with ``-size`` before its
budget label (``uniform-s0-any-predictor-size-budget_conformer_s.yaml``, for
``extra_picks_report.py``), and only where it differs from the select's pick.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from extra_picks_report import budget_of  # scripts/, beside this file
from paired_picks import size_pick_name

from supernet.archspec import ArchSpec
from supernet.commands.select import _finetuned_order
from supernet.space import SearchSpace


def size_pick(finalists: list[dict], params: list[int]) -> int:
    """The finalist with the least sum of its place in the select's own order (``select``'s
    ``_finetuned_order``: a diverged fine-tune last, then the survivors of the most rungs, then the
    lower fine-tuned objective) and its place by parameters (the most first); a tie goes to the
    select's order."""
    # a select.json written before successive halving has no ``finetune_steps``: one rung for all
    by_objective = sorted(
        range(len(params)), key=lambda i: _finetuned_order({"finetune_steps": 0, **finalists[i]})
    )
    by_size = sorted(range(len(params)), key=lambda i: -params[i])
    place = {i: by_objective.index(i) + by_size.index(i) for i in range(len(params))}
    return min(place, key=lambda i: (place[i], by_objective.index(i)))


def labelled_spec(entry: dict, space: SearchSpace) -> ArchSpec:
    """A ``select.json`` path (a budget's best or one of its finalists: its ``labels``, one
    candidate per edge in the space's order) as the ArchSpec of ``space`` it names."""
    return space.derive(dict(zip(space.edges, entry["labels"])))


def finalist_specs(best: dict, space: SearchSpace) -> list[ArchSpec]:
    """Each finalist of a budget's ``select.json`` entry as an ArchSpec of ``space``."""
    return [labelled_spec(f, space) for f in best["finalists"]]


def repick(select: dict, space: SearchSpace, picks: list[Path], vocab: int) -> list[dict]:
    """For every budget with finalists: the finalists (objective, parameters), the select's pick
    and the size pick, and the route's pick file it belongs to (matched by its layers)."""
    route = {tuple(ArchSpec.load(p).layers): p for p in picks}
    out = []
    for best in select["best"]:
        if not best.get("finalists"):
            continue
        specs = finalist_specs(best, space)
        params = [spec.params(vocab) for spec in specs]
        objectives = [f["finetuned_objective"] for f in best["finalists"]]
        chosen = size_pick(best["finalists"], params)
        own = labelled_spec(best, space)
        out.append({
            "budget": best["budget"], "objectives": objectives, "params": params,
            "own": next(i for i, spec in enumerate(specs) if spec.layers == own.layers),
            "size": chosen, "spec": specs[chosen], "pick_file": route.get(tuple(own.layers)),
        })  # fmt: skip
    return out


def size_name(pick_name: str, labels: list[str]) -> str:
    """``uniform-s0-any-predictor-budget_conformer_s`` -> ``...-predictor-size-budget_conformer_s``
    (the budget label read as ``extra_picks_report.budget_of`` reads it)."""
    return size_pick_name(pick_name, budget_of(pick_name, labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("select", type=Path, help="a select.json with --finalists")
    parser.add_argument("--space", type=Path, required=True, help="the study's space.yaml")
    parser.add_argument("--picks", type=Path, nargs="+", required=True, help="the route's pick files")
    parser.add_argument("--labels", nargs="+", default=["budget_conformer_s", "0.5xbudget_conformer_s"])
    parser.add_argument(
        "--vocab", type=int, default=64, help="the head's tokens (the ranks do not depend on it)"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    space = SearchSpace.load(args.space)
    budgets = repick(json.loads(args.select.read_text()), space, args.picks, args.vocab)
    if not budgets:
        raise SystemExit(f"{args.select}: no budget with finalists (a select run with --finalists K)")
    args.out.mkdir(parents=True, exist_ok=True)
    for entry in budgets:
        own = f" ({entry['pick_file'].stem})" if entry["pick_file"] else ""  # paired_picks reads ties by it
        print(f"budget {entry['budget']:g}{own}: finalists (fine-tuned objective, parameters):")
        for i, (objective, params) in enumerate(zip(entry["objectives"], entry["params"])):
            mark = " <- select" * (i == entry["own"]) + " <- size" * (i == entry["size"])
            print(f"  {i}: {objective if objective is None else round(objective, 4)}  {params:,}{mark}")
        if entry["size"] == entry["own"] or entry["pick_file"] is None:
            why = (
                "the same as the select's" if entry["size"] == entry["own"] else "no route pick file matches"
            )
            print(f"  size pick: {why}; none written")
            continue
        name = size_name(entry["pick_file"].stem, args.labels)
        spec = ArchSpec.from_dict({**entry["spec"].to_dict(), "name": name})
        (args.out / f"{name}.yaml").write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
        print(f"  written: {args.out / f'{name}.yaml'}")


if __name__ == "__main__":
    main()
