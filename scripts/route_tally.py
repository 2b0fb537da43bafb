"""A recipe's tally over its supernets, from the kept files alone: each supernet's pick (the
select's YAML in FOLDER/arch/, one per budget) matched, by its whole network, to a retrain kept
anywhere under the study's folder (``known_picks.retrained_rows``), then judged against the
study's baselines and random paths (``extra_picks_report.judged``). Why: supernets of one recipe
often pick one network, retrained once for all of them (session 31: six supernets, four
networks), so a tally like "5% met by 8 of 11" was summed by hand from several reports; this
reproduces it in one command, per supernet and once per network. A pick never retrained is
listed and left out of the counts. Where a folder kept its supernet's scores of the study's
networks (``scores.json``, route_seed.py's SCORE), the supernet's Kendall tau is shown beside its
picks, and per budget how far the supernets that rank better also pick better (issue 16 asks for
both; session 33: they are unrelated).

    python scripts/route_tally.py docs/study/h200_route/study.json \
        docs/study/h200_route/fullrate_x3/seed* docs/study/h200_route/size_prior/seed* \
        --space docs/study/h200_route/space.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from extra_picks_report import judged  # scripts/, beside this file
from known_picks import retrained_rows
from size_repick import labelled_spec

from supernet.archspec import ArchSpec
from supernet.latency.table import LatencyTable
from supernet.space import SearchSpace
from supernet.study import verdict
from supernet.study.plan import arch_key
from supernet.study.rank import distinct_networks, kendall_tau, ranking_quality

MET = {True: "met", False: "missed", None: "-"}  # None: the study cannot tell (too few random paths)


def pick_of(folder: Path, label: str, budget_ms: float, space: SearchSpace | None) -> ArchSpec | None:
    """A supernet's pick for one budget, from what its folder kept: the select's YAML
    (``arch/*-predictor-LABEL.yaml``), else its ``select.json`` (the best path of that budget,
    derived in ``space``), else the pick's own retrain (``retrain_archs.json``, whose YAMLs did not
    always come back from the device). None: that budget was not picked for."""
    found = sorted((folder / "arch").glob(f"*-predictor-{label}.yaml"))
    if len(found) > 1:
        raise SystemExit(f"{folder / 'arch'}: {len(found)} picks for {label}, one expected")
    if found:
        return ArchSpec.load(found[0])
    if space is not None and (folder / "select.json").exists():
        for best in json.loads((folder / "select.json").read_text())["best"]:
            if round(best["budget"], 3) == round(budget_ms, 3):
                return labelled_spec(best, space)
    if (folder / "retrain_archs.json").exists():
        for row in json.loads((folder / "retrain_archs.json").read_text())["rows"]:
            if row["name"].endswith(f"-predictor-{label}"):
                return ArchSpec.from_dict(row["arch"])
    return None


def supernet_picks(folders: list[Path], budgets: dict[str, float], space) -> list[tuple[Path, str, ArchSpec]]:
    """``(folder, budget label, pick)`` for every budget each folder's supernet picked for."""
    picks = [
        (folder, label, spec)
        for folder in folders
        for label, ms in budgets.items()
        if (spec := pick_of(folder, label, ms, space)) is not None
    ]
    if not picks:
        raise SystemExit(
            f"no pick kept (arch/, select.json, retrain_archs.json) in {', '.join(map(str, folders))}"
        )
    return picks


def retrained_picks(picks, known: dict) -> tuple[list[dict], list[str]]:
    """Each pick as a retrained row named after its supernet's folder (``fullrate_x3-seed3-LABEL``), with the
    network's key and the file its retrain came from; and the picks never retrained. Where a
    network was retrained more than once (same recipe: a repeat differs by about 0.2 points), the
    supernet's own retrain counts (in its folder), else its recipe's (beside it, in the folder's
    parent), else the one with the most seeds, the first by path among equals."""
    rows, missing = [], []
    for folder, label, spec in picks:
        supernet = supernet_label(folder)
        name = f"{supernet}-{label}"
        found = known.get(arch_key(spec), [])
        if not found:
            missing.append(name)
            continue
        path, row = min(
            found,
            key=lambda pr: (
                folder.resolve() not in pr[0].resolve().parents,
                folder.resolve().parent not in pr[0].resolve().parents,
                -pr[1]["retrain_seeds"],
                str(pr[0]),
            ),
        )
        rows.append(
            {
                **row,
                "name": name,
                "supernet": supernet,
                "network": arch_key(spec),
                "source": str(path),
                "repeats": len(found),
            }
        )
    return rows, missing


def supernet_label(folder: Path) -> str:
    """A supernet's name in the tally: its recipe's folder and its own (``fullrate_x3-seed3``)."""
    return f"{folder.parent.name}-{folder.name}"


def supernet_taus(folders: list[Path], study: dict) -> dict[str, dict | None]:
    """Each folder's supernet ranking the study's retrained networks (``scores.json``): Kendall tau
    of its score against their stand-alone dev CER over all of them and within a budget, by the
    study's own measure, as route_seed.py prints it; None where the folder kept no scores."""
    networks = distinct_networks(study["rows"])
    cer = {n: e["cer"] for n, e in networks.items()}
    budgets = {n: e["budgets"] for n, e in networks.items()}
    metric = study["config"]["ranking"]["metric"]
    return {supernet_label(f): supernet_tau(f / "scores.json", cer, budgets, metric) for f in folders}


def supernet_tau(path: Path, cer: dict, budgets: dict, metric: str) -> dict | None:
    """One supernet's taus (``supernet_taus``) from its scores file; None: there is none."""
    if not path.is_file():
        return None
    groups = json.loads(path.read_text())["groups"]
    if len(groups) != 1:
        raise SystemExit(f"{path}: {len(groups)} groups of scores, one supernet's expected")
    [scores] = [group["scores"] for group in groups.values()]
    [quality], _, _ = ranking_quality({"supernet": scores}, cer, metric, budgets)
    taus = {"all": quality["kendall_tau"], "within": quality["kendall_tau_within_budget"]}
    if None in taus.values():  # every network tied, or too few scored: no ranking to speak of
        raise SystemExit(f"{path}: scores too few or all tied to rank the study's networks ({taus})")
    return taus


def tau_lines(group: list[dict], label: str) -> list[str]:
    """The mean tau of the budget's supernets (``group``: its picks), and Kendall tau between each
    supernet's tau and its pick's dev CER: negative where the supernets that rank better pick better."""
    scored = [e for e in group if e["tau"] is not None]
    if len(scored) < 2:
        return []
    taus = [e["tau"]["all"] for e in scored]
    relation = kendall_tau(taus, [e["cer"]["dev"] for e in scored])
    return [
        f"- **{label}**, the supernets' ranking: tau {sum(taus) / len(taus):.3f} on average over "
        f"{len(scored)} supernets ({sum(t >= 0.5 for t in taus)} at 0.5 or more); against their "
        f"pick's dev CER: Kendall tau {'-' if relation is None else f'{relation:+.3f}'} (negative: the "
        "supernets that rank better pick better)"
    ]


def per_supernet(rows: list[dict], verdicts: list[dict]) -> list[dict]:
    """Each pick's two verdicts side by side: its gain over the best baseline and its place among
    the random paths."""
    by_subject = {(v["subject"], v["target"]): v for v in verdicts}
    return [
        {
            **row,
            "gain": by_subject[(row["name"], verdict.BASELINE_TARGET)],
            "random": by_subject[(row["name"], verdict.RANDOM_TARGET)],
        }
        for row in rows
    ]


def count(entries: list[dict], key: str, what: str) -> str:
    """``met by k of n WHAT, mean +g%`` over the entries' ``key`` verdicts (values: relative gains
    for the baseline target, test CER for the random paths')."""
    decided = [e[key] for e in entries if e[key]["met"] is not None]
    values = [v["value"] for v in decided]
    mean = sum(values) / len(values) if values else float("nan")
    figure = f"mean {100 * mean:+.1f}%" if key == "gain" else f"mean test CER {100 * mean:.1f}%"
    return f"met by {sum(bool(v['met']) for v in decided)} of {len(decided)} {what}, {figure}"


def report(entries: list[dict], missing: list[str], labels: list[str], taus: dict[str, dict | None]) -> str:
    lines = ["| supernet | budget | params | dev CER % | test CER % | over the best baseline | random paths' top quartile | supernet's tau (within a budget) | retrain kept in |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in entries:
        gain, tau = e["gain"]["value"], e["tau"]
        ranking = "-" if tau is None else f"{tau['all']:.3f} ({tau['within']:.3f})"
        lines.append(
            f"| {e['supernet']} | {e['budget']} | {e['params'] / 1e6:.2f} M "
            f"| {100 * e['cer']['dev']:.2f} | {100 * e['cer']['test']:.2f} "
            f"| {'-' if gain is None else f'{100 * gain:+.1f}%'}{' (missed)' if e['gain']['met'] is False else ''} "
            f"| {MET[e['random']['met']]} "
            f"| {ranking} | {e['source']} |"
        )
    lines += [""]
    for label in labels:
        group = [e for e in entries if e["budget"] == label]
        if not group:
            continue
        networks = list({e["network"]: e for e in group}.values())
        lines += [
            f"- **{label}**, >= 5% over the best baseline: {count(group, 'gain', 'supernets')}; "
            f"once per network: {count(networks, 'gain', 'networks')}",
            f"- **{label}**, the random paths' top quartile: {count(group, 'random', 'supernets')}",
            f"- **{label}**, the picks' mean dev CER (how recipes are compared): "
            f"{100 * sum(e['cer']['dev'] for e in group) / len(group):.2f}% over {len(group)} supernets",
            *tau_lines(group, label),
        ]
    scored = [t for t in taus.values() if t is not None]
    if scored:
        lines.append(
            f"- the supernets' ranking (issue 16: tau >= 0.5): tau {sum(t['all'] for t in scored) / len(scored):.3f} "
            f"on average over {len(scored)} supernets, {sum(t['all'] >= 0.5 for t in scored)} at 0.5 or more; "
            f"within a budget {sum(t['within'] for t in scored) / len(scored):.3f}"
        )
    if missing:
        lines.append(f"- never retrained (left out): {', '.join(missing)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="the study's study.json (its latency.json beside it)")
    parser.add_argument("folders", type=Path, nargs="+", help="one folder per supernet, its picks in arch/")
    parser.add_argument("--space", type=Path, help="the study's space.yaml: picks derived from select.json")
    parser.add_argument(
        "--under", type=Path, help="where retrains are searched (default: the study's folder)"
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    study = json.loads(args.study.read_text())
    budgets = {b["budget"]: b["ms"] for b in study["budgets"]}
    space = SearchSpace.load(args.space) if args.space else None
    picks = supernet_picks(args.folders, budgets, space)
    rows, missing = retrained_picks(picks, retrained_rows(args.under or args.study.parent))
    if not rows:
        raise SystemExit(f"none of the {len(picks)} picks was retrained: {', '.join(missing)}")
    table = LatencyTable.load(args.study.parent / "latency.json")
    judged_rows, verdicts = judged(study, {"rows": rows}, table, "uniform+predictor")
    taus = supernet_taus(args.folders, study)
    entries = [{**e, "tau": taus[e["supernet"]]} for e in per_supernet(judged_rows, verdicts)]
    text = report(entries, missing, list(budgets), taus)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
