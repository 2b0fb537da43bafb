"""The study's YAML: what to compare, under which latency budgets, with which one recipe.

```yaml
name: tiny                                  # default: the file's name
corpus: data/demo                           # a corpus folder or manifest, or the built-in corpus:
# corpus: {path: data/study, build: {langs: [en], minutes: 2, seed: 0}}   (built when missing)
space: st_nas                               # a shipped space or a YAML path
dim: 64                                     # optional: the space's and the baselines' width
latency:
  table: st_nas_cpu                         # measured latencies use its settings (device, threads...)
  profile: false                            # true: measure this space's table under those settings
  budgets: [2.5, p50, 0.5xtdnn_d]           # ms, pNN (a percentile of the space's paths), or a
                                            # baseline's predicted latency (times a factor)
search: {methods: [st], seeds: [0], options: {trainer.max_epochs: 8}}    # options: `supernet search`'s
select: {strategy: evolution, evaluations: 64, methods: [uniform]}      # optional: picks per budget
                                            # from these methods' supernets (`supernet select`)
random: {n: 10, seed: 0}                    # random paths within each budget
controls: {params_max: false, draws: 200000}  # true: also retrain, per budget, the path with the most
                                            # parameters among `draws` uniform draws within the
                                            # select's band (a free pick the search must beat)
baselines: [tdnn_d]                         # shipped names or ArchSpec paths
retrain: {seeds: [0, 1, 2], options: {trainer.max_epochs: 30}}          # `supernet retrain`'s options
ranking: {batches: 8, metric: cer}          # train batches that recalibrate BatchNorm per path; the
                                            # supernet score tau reports: cer or loss (both are kept),
                                            # or init_cosine (the ABS angle: keep_initial_weights)
test_sets: null                             # reported test sets (default: every one)
```

``load_config`` returns the same mapping with every default filled in (what ``study.yaml`` in the
study's folder keeps); a mistake is a ``StudyConfigError`` naming the file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from supernet.errors import UserError
from supernet.shipped import CONFIGS_DIR

REQUIRED = object()
PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")
# a baseline's predicted latency, or a fraction of it: ``budget_tdnn_d``, ``0.5xbudget_tdnn_d``
BASELINE_BUDGET = re.compile(r"^(?:(\d+(?:\.\d+)?)x)?([A-Za-z_][\w.-]*)$")


class StudyConfigError(UserError, ValueError):
    """A study YAML that cannot be run: the message names the file and the field."""


def _fail(source: str, field: str, problem: str, value: Any) -> None:
    raise StudyConfigError(f"{source}: field {field!r} {problem}, got {value!r}")


def _int(value, field, source, low=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(source, field, f"must be an integer >= {low}", value)
    return value


def _ints(value, field, source):
    if not isinstance(value, list) or not value or len(set(map(repr, value))) != len(value):
        _fail(source, field, "must be a non-empty list of distinct integers", value)
    return [_int(v, f"{field}[{i}]", source) for i, v in enumerate(value)]


def _strs(value, field, source, empty=True):
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) and v for v in value)
        or not (empty or value)
    ):
        _fail(source, field, "must be a list of names" + ("" if empty else " (at least one)"), value)
    return list(value)


def _bool(value, field, source):
    if not isinstance(value, bool):
        _fail(source, field, "must be true or false", value)
    return value


def _fraction(value, field, source):
    """None, or a number strictly between 0 and 1 (``select.floor``)."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1
    ):
        _fail(source, field, "must be a fraction of the budget between 0 and 1, or null", value)
    return None if value is None else float(value)


def _str(value, field, source):
    if not isinstance(value, str) or not value:
        _fail(source, field, "must be a non-empty string", value)
    return value


def _options(value, field, source):
    """Command line options of `supernet search` / `retrain` without their dashes."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.strip("-") for k in value):
        _fail(source, field, "must map option names (trainer.max_epochs) to values", value)
    return {k.lstrip("-"): v for k, v in value.items()}


def _budgets(value, field, source):
    if not isinstance(value, list) or not value:
        _fail(
            source, field, "must be a non-empty list of budgets (ms, pNN: a percentile, or a baseline)", value
        )
    for i, budget in enumerate(value):
        number = isinstance(budget, int | float) and not isinstance(budget, bool) and budget > 0
        match = isinstance(budget, str) and PERCENTILE.match(budget)
        named = isinstance(budget, str) and not match and BASELINE_BUDGET.match(budget)
        if not (number or named or (match and 0 < float(match.group(1)) <= 100)):
            _fail(
                source,
                f"{field}[{i}]",
                "must be milliseconds > 0, a percentile p1..p100, or a baseline's name (0.5xNAME: half of it)",
                budget,
            )
    return list(value)


def baseline_budget(budget) -> tuple[float, str] | None:
    """``(factor, baseline)`` of a budget named after a baseline, else None."""
    if not isinstance(budget, str) or PERCENTILE.match(budget):
        return None
    factor, name = BASELINE_BUDGET.match(budget).groups()
    return float(factor or 1.0), name


def _check_budget_baselines(study: dict, source: str) -> None:
    names = {Path(b).stem for b in study["baselines"]}
    for i, budget in enumerate(study["latency"]["budgets"]):
        named = baseline_budget(budget)
        if named and named[1] not in names:
            _fail(
                source,
                f"latency.budgets[{i}]",
                f"names no baseline of the study (baselines: {', '.join(sorted(names)) or 'none'})",
                budget,
            )


def _methods(value, field, source):
    from supernet.search.relaxations import RELAXATIONS

    methods = _strs(value, field, source, empty=False)
    for i, method in enumerate(methods):
        if method not in RELAXATIONS:
            _fail(
                source, f"{field}[{i}]", f"must be a search method ({', '.join(sorted(RELAXATIONS))})", method
            )
    return methods


def picks_architecture(method: str) -> bool:
    from supernet.search.relaxations import RELAXATIONS

    return RELAXATIONS[method].picks_architecture


def _check_methods(study: dict, source: str) -> None:
    """A method that picks no architecture (``uniform``) is there for ``select`` to pick from."""
    chosen = (study["select"] or {}).get("methods", [])
    for i, method in enumerate(study["search"]["methods"]):
        if not picks_architecture(method) and method not in chosen:
            _fail(
                source,
                f"search.methods[{i}]",
                "picks no architecture by itself: list it in select.methods (a strategy picks from its "
                "supernet), or use a method that does",
                method,
            )
    for i, method in enumerate(chosen):
        if method not in study["search"]["methods"]:
            _fail(source, f"select.methods[{i}]", "must be one of search.methods", method)
    select = study["select"] or {}
    if select.get("halving") and select["finalists"] < 3:  # caught here, not after the supernet trained
        _fail(source, "select.finalists", "must be 3 or more with select.halving", select["finalists"])
    averaged = (study["search"]["options"].get("model.weight_average") or 0) > 0
    if select and select["batches"] == 0 and averaged:  # select scores the average, which has no statistics
        _fail(
            source, "select.batches",
            "must be 1 or more when search.options sets model.weight_average (the averaged weights carry no "
            "BatchNorm statistics of their own)", 0,
        )  # fmt: skip
    kept = study["search"]["options"].get("model.keep_initial_weights") is True
    asking = [f for f, sec in (("select.metric", select), ("ranking.metric", study["ranking"]))
              if sec and sec["metric"] == "init_cosine"]  # fmt: skip
    if asking and not kept:  # caught here, not after the supernet trained
        _fail(
            source,
            asking[0],
            "init_cosine needs search.options model.keep_initial_weights: true",
            "init_cosine",
        )


def _optional_section(schema: dict, fields: str):
    """A field that is null (absent) or a mapping checked by ``schema``."""

    def check(value, field, source):
        if value is None:
            return None
        if not isinstance(value, dict):
            _fail(source, field, f"must be a mapping {fields} or null", value)
        return _section(value, schema, field, source)

    return check


def _strategy(value, field, source):
    from supernet.select.strategies.base import load_strategies

    STRATEGIES = load_strategies()
    if value not in STRATEGIES:
        _fail(source, field, f"must be a selection strategy ({', '.join(sorted(STRATEGIES))})", value)
    return value


def _metric(value, field, source):
    from supernet.select.score import METRICS

    if value not in METRICS:
        _fail(source, field, f"must be one of {', '.join(METRICS)}", value)
    return value


def _test_sets(value, field, source):
    return None if value is None else _strs(value, field, source, empty=False)


def _corpus(value, field, source):
    if isinstance(value, str) and value:
        return {"path": value, "build": None}
    if not isinstance(value, dict):
        _fail(source, field, "must be a corpus path or {path: ..., build: {langs, minutes, seed}}", value)
    build = _optional_section(BUILD, "{langs, minutes, seed}")
    return _section(value, {"path": (_str, REQUIRED), "build": (build, None)}, field, source)


def _minutes(value, field, source):
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        _fail(source, field, "must be a positive number of minutes", value)
    return float(value)


BUILD = {"langs": (_strs, ["en"]), "minutes": (_minutes, 2.0), "seed": (_int, 0)}
SELECT = {
    "strategy": (_strategy, "evolution"),
    "evaluations": (lambda v, f, s: _int(v, f, s, low=1), 64),
    "seed": (_int, 0),
    "batches": (lambda v, f, s: _int(v, f, s, low=0), 4),  # 0: the statistics the supernet trained with
    "metric": (_metric, "cer"),
    "options": (_options, {}),
    "methods": (lambda v, f, s: _strs(v, f, s, empty=False), ["uniform"]),
    "finalists": (lambda v, f, s: _int(v, f, s, low=1), 1),  # select --finalists (1: off)
    "finetune_steps": (lambda v, f, s: _int(v, f, s, low=1), 50),
    "halving": (_bool, False),  # select --halving: successive halving of the finalists
    "floor": (_fraction, None),  # select --floor: paths cost at least this fraction of the budget
}
SCHEMA = {
    "name": (_str, None),
    "corpus": (_corpus, REQUIRED),
    "space": (_str, REQUIRED),
    "dim": (lambda v, f, s: None if v is None else _int(v, f, s, low=1), None),
    "latency": {
        "table": (_str, REQUIRED),
        "profile": (_bool, False),
        "budgets": (_budgets, REQUIRED),
        "force": (_bool, False),
        "warmup": (_int, 3),
        "repeats": (lambda v, f, s: _int(v, f, s, low=1), 10),
        "rounds": (lambda v, f, s: _int(v, f, s, low=1), 3),
    },
    "search": {"methods": (_methods, REQUIRED), "seeds": (_ints, [0]), "options": (_options, {})},
    "select": (_optional_section(SELECT, "{strategy, evaluations, methods, ...}"), None),
    "random": {"n": (_int, 10), "seed": (_int, 0)},
    "controls": {"params_max": (_bool, False), "draws": (lambda v, f, s: _int(v, f, s, low=1), 200_000)},
    "baselines": (_strs, []),
    "retrain": {"seeds": (_ints, [0]), "options": (_options, {})},
    "ranking": {"batches": (_int, 8), "metric": (_metric, "cer")},
    "test_sets": (_test_sets, None),
}


def _section(data: Any, schema: dict, where: str, source: str) -> dict[str, Any]:
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        _fail(source, where or "<top>", "must be a mapping", data)
    unknown = sorted(set(data) - set(schema))
    if unknown:
        _fail(
            source,
            prefix + str(unknown[0]),
            f"is not a study field (fields: {', '.join(schema)})",
            data[unknown[0]],
        )
    out = {}
    for key, rule in schema.items():
        field = prefix + key
        if isinstance(rule, dict):
            out[key] = _section(data.get(key, {}), rule, field, source)
            continue
        check, default = rule
        if key not in data:
            if default is REQUIRED:
                raise StudyConfigError(f"{source}: field {field!r} is missing")
            out[key] = default
        else:
            out[key] = check(data[key], field, source)
    return out


def resolve_config_path(config: str | Path) -> Path:
    """A YAML path, or the name of a shipped study (``tiny``: ``supernet/configs/study/``)."""
    path = Path(config)
    if path.is_file():
        return path
    shipped = CONFIGS_DIR / "study" / f"{config}.yaml"
    if path.name == str(config) and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in (CONFIGS_DIR / "study").glob("*.yaml")))
    raise StudyConfigError(f"study config {str(config)!r}: no such file, and not a shipped study ({names})")


def load_config(config: str | Path | dict, source: str | None = None) -> dict[str, Any]:
    """The study's mapping with every default filled in; ``StudyConfigError`` names a bad field."""
    if isinstance(config, dict):
        data, source = config, source or "<dict>"
    else:
        path = resolve_config_path(config)
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise StudyConfigError(f"{source}: not valid YAML: {err}") from err
    study = _section(data, SCHEMA, "", source)
    _check_budget_baselines(study, source)
    _check_methods(study, source)
    if study["name"] is None:
        study["name"] = Path(source).stem if source != "<dict>" else "study"
    return study
