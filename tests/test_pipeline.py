"""The ``pipeline`` workload (not yet registered): under every executor on the emulator its
outputs equal numpy's k FMAs per element, and so do its baseline's; its figures count what
it moved."""

from __future__ import annotations

import pytest

import workloads
from executors import EXECUTORS
from harness.backend import EmuBackend
from harness.cases import CaseSpec, run_case
from harness.errors import PollbenchError
from workloads.pipeline import PipelineWorkload


@pytest.fixture
def small_pipeline(monkeypatch):
    wl = PipelineWorkload(k=3, elems=8, chunk=4)
    monkeypatch.setitem(workloads.WORKLOADS, "pipeline", wl)
    return wl


@pytest.mark.parametrize("executor", list(EXECUTORS))
def test_pipeline_under_every_executor(executor, small_pipeline):
    dispatch = "inline" if executor == "block_on" else "direct"
    r = run_case(CaseSpec(executor, "pipeline", dispatch, "thread", ntasks=32, block=32),
                 EmuBackend(), repeats=1, instrument=False)
    assert r.check == "pass" and r.baseline_check == "pass"


def test_pipeline_sizes_and_figures(small_pipeline):
    import numpy as np

    x = small_pipeline.make_inputs(np.random.default_rng(1), 32)["x"]
    assert x.size == 32 * 8 and (x != 0).all()
    m = small_pipeline.metrics(None, {"x": x}, 0, 32, 2.0)
    assert m["elements"] == 256
    assert m["gb_per_s"] == pytest.approx(8 * 256 / 2e-3 / 1e9)
    assert m["gflop_per_s"] == pytest.approx(2 * 3 * 256 / 2e-3 / 1e9)
    with pytest.raises(PollbenchError, match="whole number"):
        PipelineWorkload(elems=10, chunk=4)
