"""Predict a path's score from its encoding, to spend evaluations only on promising paths.

A path is encoded as one one-hot block per edge, followed by optional extra features (a callable
``path -> [cost, FLOPs, params, ...]``, standardized on the training paths so that milliseconds
and millions of parameters weigh alike). Two predictors share ``fit(paths, scores)`` /
``predict(paths) -> scores``: ``MLPPredictor`` (a small seeded MLP, trained full-batch with Adam)
and ``GPPredictor`` (an exact Gaussian process, RBF kernel, its length scale, signal and noise fit
by maximizing the marginal likelihood). Scores are standardized for training and returned in
their own units. ``kendall_tau_on_held_out`` says how well a predictor ranks paths it has not
seen (Kendall's tau-b, as ``supernet study`` measures the supernet's ranking).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from supernet.errors import UserError
from supernet.select.problem import Path
from supernet.study.rank import kendall_tau

Features = Callable[[Path], Sequence[float]]


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread while inside: these tensors are tiny, and several threads only contend
    (20x slower on a busy 2-core machine); the setting is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Encoder:
    """One-hot per edge, then the extra features standardized with the statistics of ``fit``."""

    def __init__(self, edges: dict[str, int], features: Features | None) -> None:
        self.edges, self.features = dict(edges), features
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def _raw(self, paths: Sequence[Path]) -> tuple[torch.Tensor, torch.Tensor | None]:
        onehot = torch.zeros(len(paths), sum(self.edges.values()), dtype=torch.float64)
        for row, path in enumerate(paths):
            offset = 0
            for name, n in self.edges.items():
                onehot[row, offset + int(path[name])] = 1.0
                offset += n
        if self.features is None:
            return onehot, None
        return onehot, torch.tensor([list(self.features(p)) for p in paths], dtype=torch.float64)

    def fit(self, paths: Sequence[Path]) -> torch.Tensor:
        onehot, extra = self._raw(paths)
        if extra is not None:
            self.mean, self.std = extra.mean(0), extra.std(0, unbiased=False).clamp_min(1e-12)
        return self(paths)

    def __call__(self, paths: Sequence[Path]) -> torch.Tensor:
        onehot, extra = self._raw(paths)
        if extra is None:
            return onehot
        return torch.cat([onehot, (extra - self.mean) / self.std], 1)


class _Predictor:
    def __init__(self, edges: dict[str, int], features: Features | None = None) -> None:
        self.encoder = _Encoder(edges, features)
        self.y_mean, self.y_std = 0.0, 1.0

    def fit(self, paths: Sequence[Path], scores: Sequence[float]) -> _Predictor:
        if len(paths) != len(scores) or not paths:
            raise UserError("predictor: fit needs as many scores as paths, and at least one")
        y = torch.tensor([float(s) for s in scores], dtype=torch.float64)
        if not torch.isfinite(y).all():
            raise UserError("predictor: fit on finite scores only (infeasible paths have none)")
        self.y_mean, self.y_std = float(y.mean()), max(float(y.std(unbiased=False)), 1e-12)
        with one_thread():
            self._fit(self.encoder.fit(paths), (y - self.y_mean) / self.y_std)
        return self

    def predict(self, paths: Sequence[Path]) -> list[float]:
        if not paths:
            return []
        with torch.no_grad(), one_thread():
            return (self._predict(self.encoder(paths)) * self.y_std + self.y_mean).tolist()

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MLPPredictor(_Predictor):
    """``hidden`` ReLU units, one hidden layer, trained ``epochs`` full-batch Adam steps on the mean
    squared error; the initial weights come from ``seed`` alone (the global RNG is untouched)."""

    def __init__(
        self,
        edges: dict[str, int],
        features: Features | None = None,
        hidden: int = 64,
        epochs: int = 300,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        super().__init__(edges, features)
        self.hidden, self.epochs, self.lr, self.weight_decay, self.seed = (
            hidden,
            epochs,
            lr,
            weight_decay,
            seed,
        )
        self.net: nn.Module | None = None

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = nn.Sequential(nn.Linear(x.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1))
        self.net = self.net.double()
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(self.epochs):
            optimizer.zero_grad()
            loss = ((self.net(x).squeeze(1) - y) ** 2).mean()
            loss.backward()
            optimizer.step()

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class GPPredictor(_Predictor):
    """Exact GP regression, ``k(a, b) = s^2 exp(-|a - b|^2 / 2l^2)`` plus noise on the diagonal;
    ``l``, ``s`` and the noise maximize the log marginal likelihood (``steps`` Adam steps); the
    prediction is the posterior mean."""

    def __init__(self, edges: dict[str, int], features: Features | None = None, steps: int = 100) -> None:
        super().__init__(edges, features)
        self.steps = steps

    def _kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        length, signal = self.log_params[0].exp(), self.log_params[1].exp()
        return signal**2 * torch.exp(-(torch.cdist(a, b) ** 2) / (2 * length**2))

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # log length scale, log signal, log noise: start at l = 1 (one-hot paths differ by sqrt 2 an edge)
        self.log_params = torch.tensor([0.0, 0.0, math.log(0.1)], dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.Adam([self.log_params], lr=0.05)
        eye = torch.eye(len(x), dtype=torch.float64)
        for _ in range(self.steps):
            optimizer.zero_grad()
            cov = self._kernel(x, x) + (self.log_params[2].exp() ** 2 + 1e-6) * eye
            chol = torch.linalg.cholesky(cov)
            alpha = torch.cholesky_solve(y.unsqueeze(1), chol)
            nll = 0.5 * (y.unsqueeze(0) @ alpha).squeeze() + chol.diagonal().log().sum()
            nll.backward()
            optimizer.step()
        with torch.no_grad():
            cov = self._kernel(x, x) + (self.log_params[2].exp() ** 2 + 1e-6) * eye
            self.x, self.alpha = x, torch.cholesky_solve(y.unsqueeze(1), torch.linalg.cholesky(cov))

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return (self._kernel(x, self.x) @ self.alpha).squeeze(1)


PREDICTORS = {"mlp": MLPPredictor, "gp": GPPredictor}


def build_predictor(
    kind: str, edges: dict[str, int], features: Features | None = None, seed: int = 0
) -> _Predictor:
    if kind not in PREDICTORS:
        raise UserError(f"predictor: unknown {kind!r}; choose one of {', '.join(sorted(PREDICTORS))}")
    return MLPPredictor(edges, features, seed=seed) if kind == "mlp" else GPPredictor(edges, features)


def kendall_tau_on_held_out(
    predictor: _Predictor,
    paths: Sequence[Path],
    scores: Sequence[float],
    fraction: float = 0.5,
    seed: int = 0,
) -> float | None:
    """Fit ``predictor`` on a random ``1 - fraction`` of the paths and return Kendall's tau-b of its
    predictions against the true scores on the held-out ``fraction`` (None when undefined)."""
    if not 0 < fraction < 1:
        raise UserError("predictor: the held-out fraction must lie strictly between 0 and 1")
    order = list(range(len(paths)))
    random.Random(seed).shuffle(order)
    held = max(2, round(fraction * len(paths)))
    if len(paths) - held < 1:
        raise UserError("predictor: too few paths to hold some out and train on the rest")
    test, train = order[:held], order[held:]
    predictor.fit([paths[i] for i in train], [scores[i] for i in train])
    predicted = predictor.predict([paths[i] for i in test])
    return kendall_tau(predicted, [float(scores[i]) for i in test])
