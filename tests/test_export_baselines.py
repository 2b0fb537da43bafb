"""Parity of every shipped baseline (issue 18), at tiny width, as tests/test_export_spaces.py
checks the spaces: new shipped baselines are covered by name, with no edit here."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from supernet.archspec import ArchSpec  # noqa: E402
from supernet.shipped import shipped_names  # noqa: E402
from tests.test_export_spaces import WIDTH, assert_parity  # noqa: E402


@pytest.mark.parametrize("name", shipped_names("arch"))
def test_a_shipped_baseline_exports_with_parity(name, tmp_path):
    data = ArchSpec.load(name).to_dict()
    assert_parity(ArchSpec.from_dict({**data, "dim": WIDTH}), tmp_path)
