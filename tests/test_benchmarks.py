"""The asv benchmarks: asv accepts them, every executor's cases are parametrized, one
setup_cache serves every class, and a track_* reads its case's record."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from executors import EXECUTORS
from harness.gpu import gpu_available
from harness.results.figures import FIGURES

ROOT = Path(__file__).resolve().parent.parent
bench = pytest.importorskip("benchmarks.benchmarks")


def test_asv_check_finds_no_problem():
    pytest.importorskip("asv")
    asv = shutil.which("asv") or pytest.skip("the asv command is not on PATH")
    r = subprocess.run([asv, "check", "--environment", f"existing:{sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No problems found" in r.stdout


def test_every_executor_has_a_class_with_its_own_parameters_and_every_figure():
    for ex in EXECUTORS.values():
        cls = getattr(bench, "".join(p.capitalize() for p in ex.name.split("_")))
        assert cls.executor == ex.name
        assert cls.params[1:] == (list(ex.dispatch_modes), list(ex.granularities))
        for name, fig in FIGURES.items():
            track = getattr(cls, f"track_{name}")
            assert track.unit == fig.unit and track.__doc__
        # one setup_cache function for every class: asv keys its cache by the function's
        # place in the file, so all cases run once per `asv run`
        assert cls.setup_cache is bench.all_cases


@pytest.mark.skipif(gpu_available(), reason="on a GPU all_cases runs every case")
def test_without_a_gpu_asv_skips_every_case():
    assert bench.all_cases() is None
    with pytest.raises(NotImplementedError, match="no GPU"):
        bench.Embassy().setup(None, "seed_demo", "direct", "thread")


def test_a_track_reads_its_case_record(monkeypatch):
    monkeypatch.setenv("POLLBENCH_ASV_BACKEND", "emu")
    monkeypatch.setenv("POLLBENCH_ASV_EXECUTORS", "block_on")
    monkeypatch.setenv("POLLBENCH_ASV_WORKLOADS", "seed_demo,fan_out")
    monkeypatch.setenv("POLLBENCH_ASV_NTASKS", "32")
    cache = bench.all_cases()
    b = bench.BlockOn()
    b.setup(cache, "seed_demo", "direct", "thread")
    share = b.track_bookkeeping_share(cache, "seed_demo", "direct", "thread")
    assert 0 < share < 1
    assert math.isnan(b.track_time_ms(cache, "seed_demo", "direct", "thread"))  # emulator
    with pytest.raises(NotImplementedError, match="no run queue"):
        b.setup(cache, "fan_out", "direct", "thread")  # block_on cannot spawn
    with pytest.raises(NotImplementedError, match="was not run"):
        bench.Embassy().setup(cache, "seed_demo", "direct", "thread")
