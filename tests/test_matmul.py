"""The ``matmul`` workloads: cooperative tile tasks under block_on on the emulator (inline,
with the baseline; direct, and embassy's and backoff's, in the conformance suite), the
sampled-tile check catching what it must, the skips of executors that cannot poll a tile
together, ptxas's resources; ``-m gpu``: one shape on a card against numpy, with the wgmma
kernel (sm_90) and cuBLAS (when torch is there) beside it."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import EmuBackend
from harness.cases import CaseSpec, Unsupported, build_case, run_case, unsupported_reason
from harness.compile import compile_ptx
from harness.gpu.testing import requires_gpu
from workloads import FAMILIES, get_workload
from workloads.gemm_mma import BM, BN, THREADS
from workloads.matmul import SHAPES, bf16_values


def test_a_case_task_count_maps_back_to_its_shape():
    for name in FAMILIES["matmul"]:
        wl = get_workload(name)
        for asked in (64, THREADS, 3 * THREADS, 1 << 20):
            n = wl.tasks(asked)
            assert wl.tasks(n) == n and wl.shape(n) == wl.shape(asked), (name, asked)
        assert wl.shape(1 << 20) == SHAPES[name]


def test_the_family_has_the_issues_shapes():
    shapes = [SHAPES[n] for n in FAMILIES["matmul"]]
    assert (8192, 8192, 8192) in shapes
    assert {s[0] for s in shapes if s[0] == s[1] == s[2]} >= {1024, 2048, 4096, 8192, 16384}
    assert any(min(m, n) <= 256 for m, n, _ in shapes)  # a skinny one


def test_tile_tasks_under_block_on_on_the_emulator():
    """One tile, inline (the emulator takes 40 s of CPU for it); the frame-slot dispatch
    runs in the conformance suite (``direct``: block_on's block loop, and embassy's and
    backoff's block workers, one run queue a thread in lockstep), the tile mapping over
    several tiles in tests/test_gemm_mma.py (the same tile code) and on a GPU."""
    wl = get_workload("matmul_8192")
    n = wl.tasks(THREADS)
    spec = CaseSpec("block_on", "matmul_8192", "inline", "block", ntasks=n, block=THREADS)
    assert n == THREADS and wl.shape(n) == (BM, BN, 96)  # one tile, 3 K steps
    r = run_case(spec, EmuBackend(max_steps=500_000_000, policy="random", seed=3), repeats=1,
                 instrument=False)
    assert r.check == "pass" and r.baseline_check == "pass"


def test_the_sampled_tiles_catch_a_wrong_poisoned_or_misplaced_output():
    wl = get_workload("matmul_8192")
    n = wl.tasks(4 * THREADS)
    m, nn, k = wl.shape(n)
    ins = wl.make_inputs(np.random.default_rng(0), n)
    want = wl.reference(ins, n)
    c = (bf16_values(ins["a"]) @ bf16_values(ins["bt"]).T).astype(np.float32)
    assert want.verdict(c.ravel()) == "pass"
    bad = c.copy()
    bad[3, 5] += 0.01 * abs(bad[3, 5]) + 1e-3  # one element of the first tile, a little off
    assert "C[3, 5]" in want.verdict(bad.ravel())
    poisoned = c.copy().ravel()
    poisoned.view(np.uint32)[-1] = 0xCDCDCDCD
    assert "never written" in want.verdict(poisoned)
    swapped = c.copy()
    swapped[:, :BN], swapped[:, BN:2 * BN] = c[:, BN:2 * BN], c[:, :BN]
    assert want.verdict(swapped.ravel()).startswith("FAIL")
    assert want.verdict(c.ravel()[:-1]).startswith("FAIL")


def test_executors_that_poll_thread_by_thread_skip_with_the_reason():
    for ex, gran in (("embassy", "warp"), ("graph", "thread"), ("smem_ready", "thread"),
                     ("block_on", "warp")):
        spec = CaseSpec(ex, "matmul_1024", "direct", gran, ntasks=THREADS, block=THREADS)
        assert "polled together" in unsupported_reason(spec)
        with pytest.raises(Unsupported):
            build_case(spec)
    spec = CaseSpec("block_on", "matmul_1024", "direct", "block", ntasks=THREADS, block=128)
    assert f"block of {THREADS}" in unsupported_reason(spec)


def test_ptxas_takes_the_inline_task_and_the_baseline_without_spills():
    """(``direct`` dispatch does spill: the poll ABI's call of a 64-accumulator future
    takes 254 registers and spills 16 bytes; ``pollbench run`` reports it per case.)"""
    m, kernel, baseline, _ = build_case(CaseSpec("block_on", "matmul_8192", "inline", "block",
                                                 ntasks=1 << 21, block=THREADS), "sm_90")
    res = compile_ptx(m.to_ptx(), "sm_90").resources
    for name in (kernel.name, baseline):
        assert res[name].spill_stores == 0 and res[name].stack_frame == 0, name
    assert res[baseline].registers <= 128  # two blocks an SM (.minnctapersm 2)


@requires_gpu
def test_a_matmul_on_this_gpu(gpu_backend):
    wl = get_workload("matmul_1024")
    r = run_case(CaseSpec("block_on", "matmul_1024", "inline", "block", ntasks=wl.tasks(1 << 20),
                      block=THREADS), gpu_backend, repeats=5, instrument=False)
    assert r.ok, r.failure
    assert r.time_ms > 0 and r.baseline_ms > 0
    figures = r.extra["metrics"]
    assert figures["gflop_per_s"] > 0 and figures["flops"] == 2 * 1024 ** 3
    wgmma = figures.get("references", {}).get("wgmma")  # the sm_90 kernel, checked
    assert (wgmma is not None) == (gpu_backend.arch == "sm_90")
    if wgmma is not None:
        assert wgmma["check"] == "pass" and wgmma["ms"] > 0
    cublas = figures.get("references", {}).get("cublas")
    if cublas is not None:  # torch there: the ceiling was timed
        assert cublas["ms"] > 0
