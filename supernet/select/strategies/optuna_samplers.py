"""``tpe`` and ``nsga2``: Optuna's samplers over a path's edges (``pip install 'supernet[select]'``).

Each edge is a categorical parameter. ``tpe`` (``TPESampler``) lowers the score; ``nsga2``
(``NSGAIISampler``) lowers score and cost together, so one run gives a front (``Problem.front``)
from which each budget takes its best path. Both get the budget (and a floor) as an Optuna
constraint (a path outside it is infeasible and is told, not scored). Optuna is imported in
``run``, not when registered. Seeded (``seed=``): same seed, same picks. A sampler may propose a
path again: it costs nothing (the cache), and proposals stop after ``patience`` in a row that
scored nothing new.
"""

from __future__ import annotations

import math

from supernet.errors import UserError
from supernet.select.problem import Problem
from supernet.select.strategies.base import Strategy, register_strategy

INSTALL = "pip install 'supernet[select]'"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError(f"strategies tpe and nsga2 need Optuna: `{INSTALL}`") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class _OptunaStrategy(Strategy):
    objectives = 1

    def __init__(self, patience: int = 200, **sampler_options):
        self.patience, self.sampler_options = patience, sampler_options

    def options(self):
        return {"patience": self.patience, **self.sampler_options}

    def sampler(self, optuna, seed: int, constraints):
        raise NotImplementedError

    def run(self, problem: Problem, evaluations: int, seed: int) -> None:
        optuna = _optuna()
        distributions = {
            name: optuna.distributions.CategoricalDistribution(list(range(n)))
            for name, n in problem.edges.items()
        }

        new_api = hasattr(optuna.trial.Trial, "set_constraint")  # Optuna >= 5; older take constraints_func

        def constraints(trial):
            return (trial.user_attrs["over"],)

        study = optuna.create_study(
            directions=["minimize"] * self.objectives,
            sampler=self.sampler(optuna, seed, None if new_api else constraints),
        )
        stale, worst = 0, 0.0
        while problem.evaluations < evaluations and stale < self.patience:
            trial = study.ask(distributions)
            path = {name: int(trial.params[name]) for name in problem.edges}
            cost = problem.cost_fn(path)
            over = problem.outside(cost)
            trial.set_user_attr("over", over)
            if new_api:
                trial.set_constraint("over_budget", over)
            before = problem.evaluations
            score = problem.evaluate(path)
            stale = 0 if problem.evaluations > before else stale + 1
            if math.isfinite(score):
                worst = max(worst, score)
            else:
                score = worst  # never scored; the constraint marks it infeasible
            study.tell(trial, [score, cost][: self.objectives])


@register_strategy
class TPE(_OptunaStrategy):
    """Optuna's ``TPESampler`` (``n_startup_trials``: random trials before the model, default 10)."""

    name = "tpe"

    def __init__(self, patience: int = 200, n_startup_trials: int = 10, multivariate: bool = False):
        super().__init__(patience, n_startup_trials=n_startup_trials, multivariate=multivariate)

    def sampler(self, optuna, seed, constraints):
        return optuna.samplers.TPESampler(
            seed=seed, **({"constraints_func": constraints} if constraints else {}), **self.sampler_options
        )


@register_strategy
class NSGA2(_OptunaStrategy):
    """Optuna's ``NSGAIISampler`` on (score, cost): the Pareto front in one run."""

    name = "nsga2"
    objectives = 2

    def __init__(self, patience: int = 200, population_size: int = 20):
        super().__init__(patience, population_size=population_size)

    def sampler(self, optuna, seed, constraints):
        return optuna.samplers.NSGAIISampler(
            seed=seed, **({"constraints_func": constraints} if constraints else {}), **self.sampler_options
        )
