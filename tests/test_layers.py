"""The layers of the code: the model (search core, derived network, losses) imports no
acceleration, which reaches it only through the op runner (``supernet.runner``) and the CTC
registry (``losses.ctc``); ``supernet.archspec`` sits below ``supernet.derived``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from supernet.runner import EAGER, EagerRunner
from supernet.search.mixed_op import EdgePlan
from supernet.search.network import Supernet
from supernet.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
MODEL = [
    "supernet.derived",
    "supernet.search.network",
    "supernet.search.module",
    "losses",
    "supernet.asr_module",
]


def _python(script: str) -> None:
    """Run ``script`` in a fresh Python process; its assertions fail the test."""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_model_imports_no_acceleration():
    """In a fresh process: importing the model loads nothing of ``supernet.accel``."""
    _python(
        "import importlib, sys\n"
        f"for name in {MODEL!r}:\n"
        "    importlib.import_module(name)\n"
        "    accel = sorted(m for m in sys.modules if m.startswith('supernet.accel'))\n"
        "    assert not accel, f'importing {name} loaded {accel}'\n"
    )


def test_the_recipe_registers_the_triton_ctc_where_the_choice_may_be_it():
    """``losses`` alone knows PyTorch's CTC; the recipe's host-lengths step loads Triton's on CUDA."""
    pytest.importorskip("triton")
    _python(
        "import torch\n"
        "from losses import ctc\n"
        "from supernet.asr_module import ctc_host_lengths\n"
        "ctc_host_lengths({}, None, 'auto', torch.device('cpu'))\n"
        "assert 'triton' not in ctc._REGISTERED\n"
        "ctc_host_lengths({}, None, 'auto', torch.device('cuda'))\n"
        "assert 'triton' in ctc._REGISTERED\n"
    )


def _imports(module: str) -> set[str]:
    """The modules ``module``'s file imports anywhere (inside functions too), as absolute names."""
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _reachable(start: str) -> set[str]:
    """The repository's modules that ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for name in _imports(todo.pop()):
            root = ROOT / Path(*name.split("."))
            if name not in seen and (root.is_dir() or root.with_suffix(".py").is_file()):
                seen.add(name)
                todo.append(name)
    return seen


def test_archspec_sits_below_the_derived_network():
    assert "supernet.archspec" in _imports("supernet.derived")
    assert "supernet.derived" not in _reachable("supernet.archspec"), "an import cycle"


def _wing(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("wing", ["supernet.latency", "supernet.data", "supernet.space", "supernet.archspec"])
def test_the_wings_below_the_search_never_import_it(wing):
    """One import direction: commands -> search -> latency / data -> space / archspec -> ops. The
    latency wing reads spaces (``supernet.space``), never the search core (no package cycle)."""
    modules = [wing] + [
        f"{wing}.{p.stem}" for p in (ROOT / Path(*wing.split("."))).glob("*.py") if p.stem != "__init__"
    ]
    reached = {_wing(m) for module in modules for m in _reachable(module)}
    assert not reached & {"supernet.search", "supernet.commands", "supernet.study", "supernet.select"}


class _HalvedScores(EagerRunner):
    """A runner that records what it runs and halves every ST score it computes."""

    def __init__(self):
        self.ran: list[tuple[str, object]] = []

    def run(self, op, x, lengths, group, name):
        self.ran.append((name, group))
        return op(x, lengths)

    def edge_scores(self, edge, index, x, lengths, grad_out, sampled_out):
        return edge.eager_scores(index, x, lengths, grad_out, sampled_out) / 2


def test_the_network_runs_its_ops_and_edge_scores_through_its_runner():
    fields = {"features": "fbank", "feature_dim": 6, "dim": 8, "input": "linear", "head": "linear"}
    layers = [{"name": "e1", "choice": ["tdnn-k3-d1", "tdnn-k5-d1", "skip"]}, "tdnn-k3-d1"]
    torch.manual_seed(0)
    net = Supernet(SearchSpace({"name": "toy", **fields, "layers": layers}), 5)
    alpha = torch.zeros(3, requires_grad=True)
    x, lengths = torch.randn(2, 9, 6), torch.tensor([9, 7])

    def alpha_grad():
        net.apply_plan({"e1": EdgePlan("st", index=1, probs=alpha.softmax(-1))})
        (grad,) = torch.autograd.grad(net(x, lengths)[0].square().sum(), alpha)
        return grad

    eager = alpha_grad()
    runner = _HalvedScores()
    net.set_runner(runner)
    assert net.runner is runner and net.edges["e1"].runner is runner
    torch.testing.assert_close(alpha_grad(), eager / 2)
    # the edge itself, then its sampled candidate, in the edge's group
    assert [name for name, _ in runner.ran] == ["linear", "MixedOp", "edge 'e1'", "tdnn-k3-d1", "linear"]
    assert runner.ran[2][1] is net.edges["e1"], "an edge's candidates run as one group"
    net.set_runner(None)
    assert net.runner is EAGER and net.edges["e1"].runner is EAGER
