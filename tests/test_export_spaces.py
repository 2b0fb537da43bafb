"""Parity of a searched model of every shipped space (issue 18; the baselines' in
test_export_baselines.py), at tiny width: the exported fp32 model's log-probs within 1e-4 of
PyTorch's, the same lengths and the same greedy transcripts. Files apart from tests/test_export.py
so that parallel workers split them (each export takes seconds); new shipped spaces are covered
by name, with no edit here.
"""

from __future__ import annotations

import random

import pytest
import torch
import yaml

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from supernet.archspec import ArchSpec  # noqa: E402
from supernet.asr_module import ASRModule  # noqa: E402
from supernet.deploy.export import export_asr_module  # noqa: E402
from supernet.shipped import shipped_names, shipped_path  # noqa: E402
from supernet.space import SearchSpace  # noqa: E402
from tests.test_export import TOKENIZER  # noqa: E402

WIDTH = 32
# st_nas: tests/test_export.py exports its searched path. budget_rate: budget's blocks behind a
# stem of stride 2, 3 or 4 (strided TDNNs export in every baseline here); its path cost 55 s.
TESTED_ELSEWHERE = {"st_nas", "budget_rate"}


def assert_parity(spec: ArchSpec, tmp_path) -> None:
    torch.manual_seed(0)
    module = ASRModule(spec.to_dict(), vocab=TOKENIZER.vocab).eval()
    report = export_asr_module(module, tmp_path / "m.onnx")
    parity = report["parity"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["same_lengths"] and parity["same_transcripts"], parity


@pytest.mark.parametrize("space_name", sorted(set(shipped_names("space")) - TESTED_ELSEWHERE))
def test_a_searched_path_of_a_shipped_space_exports_with_parity(space_name, tmp_path):
    """A seeded random path: what a search may pick."""
    data = yaml.safe_load(shipped_path("space", space_name).read_text())
    space = SearchSpace({**data, "dim": WIDTH})
    path = space.sample_path(random.Random(0))
    assert_parity(space.derive(path, name=f"{space_name}-pick"), tmp_path)
