"""The ``pipeline_k<K>`` workloads (under every executor: the conformance suite): on the
emulator a case's outputs equal numpy's K FMAs per element, and so do its baseline's;
sizes follow the task count; the roofline's FMA kernel computes what numpy says; the throughput figures and table read a
record's references. ``-m gpu``: one case on a card with its TMA, copy and FMA-peak
references checked and their figures within what the card can do."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import EmuBackend
from harness.cases import CaseSpec, run_case
from harness.errors import PollbenchError
from harness.gpu.testing import requires_gpu
from harness.measure.clock import device_clock_mhz
from harness.ptx import Module
from workloads import DEFAULT_WORKLOADS, FAMILIES, get_workload, roofline, workload_names
from workloads.base import Work
from workloads.pipeline import GROUP, MAX_ELEMENTS, PIPELINE_K, fma_rounds, sizes


def test_a_case_and_its_figures():  # every executor: conformance/test_executors.py
    r = run_case(CaseSpec("embassy", "pipeline_k16", "direct", "thread", ntasks=32, block=32),
                 EmuBackend(), repeats=1, instrument=False)
    assert r.check == "pass" and r.baseline_check == "pass"
    assert r.extra["metrics"]["bytes"] == 8 * 32 * 8
    assert r.extra["metrics"]["flops"] == 2 * 16 * 32 * 8
    assert "gb_per_s" not in r.extra["metrics"]  # the emulator times nothing


def test_a_wrong_output_fails_the_check():
    wl = get_workload("pipeline_k1")
    inputs = wl.make_inputs(np.random.default_rng(3), 64)
    want = wl.reference(inputs, 64)
    assert np.array_equal(want, fma_rounds(inputs["x"], 1))
    assert not np.array_equal(want, fma_rounds(inputs["x"], 2))  # K is visible at K = 1


def test_sizes_follow_the_task_count():
    assert sizes(1 << 20) == (256, 32)  # 2^28 floats: 1 GiB in, 1 GiB out
    assert sizes(1 << 18) == (64, 32)
    assert sizes(64) == (8, 8) and sizes(1) == (8, 8)
    assert sizes(1 << 26) == (16, 8)  # the CLI's most tasks: 2^30 elements, u32 indices
    assert all(n * sizes(n)[0] <= MAX_ELEMENTS for n in (1 << 22, 3 << 23, 1 << 26))
    for n in (1, 100, 5000, 1 << 16, 3 << 17, 1 << 22):
        elems, chunk = sizes(n)
        assert elems % chunk == 0 and chunk % GROUP == 0 and elems & (elems - 1) == 0


def test_inputs_are_random_and_the_reference_is_numpys():
    wl = get_workload("pipeline_k16")
    a = wl.make_inputs(np.random.default_rng(1), 4096)
    b = wl.make_inputs(np.random.default_rng(2), 4096)
    assert a["x"].size == 4096 * sizes(4096)[0] and (a["x"] != 0).all()
    assert not np.array_equal(a["x"], b["x"])
    assert np.array_equal(wl.reference(a, 4096), fma_rounds(a["x"], 16))


def test_early_stop_at_the_fixed_point_changes_nothing():
    x = np.random.default_rng(5).standard_normal(4096, dtype=np.float32) * 8
    y = x.copy()
    for _ in range(256):  # every round, no early stop
        y = (y * np.float32(0.5) + np.float32(0.25)).astype(np.float32)
    assert np.array_equal(fma_rounds(x, 256), y)


def test_families_expand_and_unknown_names_are_one_line():
    assert workload_names(None) == list(DEFAULT_WORKLOADS)
    assert workload_names(["pipeline"]) == [f"pipeline_k{k}" for k in PIPELINE_K]
    assert workload_names(["seed_demo", "pipeline", "pipeline_k1"])[:2] == ["seed_demo", "pipeline_k1"]
    assert FAMILIES["pipeline"][0] == "pipeline_k1"
    with pytest.raises(PollbenchError, match="unknown workload 'nope'"):
        workload_names(["nope"])


def test_the_fma_peak_kernel_computes_what_numpy_says():
    m = Module(arch="sm_90")
    roofline.build_fma_peak(m)
    be = EmuBackend()
    be.load(m)
    grid, iters = 2, 3
    out = be.alloc(4 * grid * roofline.FMA_BLOCK)
    be.launch(roofline.FMA_KERNEL, grid, roofline.FMA_BLOCK, [out, np.uint32(iters)], checked=True)
    got = be.read(out, np.float32, grid * roofline.FMA_BLOCK)
    tid = np.arange(grid * roofline.FMA_BLOCK, dtype=np.float32)
    want = np.zeros_like(tid)
    for j in range(roofline.ACCUMULATORS):
        acc = (tid * np.float32(2.0 ** -20) + np.float32(j)).astype(np.float32)
        for _ in range(iters * roofline.UNROLL):
            acc = (acc * np.float32(0.5) + np.float32(0.25)).astype(np.float32)
        want = (want + acc).astype(np.float32) if j else acc
    assert np.array_equal(got, want)


def test_the_emulators_copy_copies():
    be = EmuBackend()
    be.load(Module(arch="sm_90"))
    x = np.random.default_rng(2).integers(1, 1 << 30, 64, dtype=np.uint32)
    ref = roofline.copy_reference(be, be.to_device(x), x.nbytes)
    dst = ref.copy[0]
    assert not np.array_equal(be.read(dst, np.uint32, 64), x)  # poisoned first
    ref.launch(be, checked=True)
    assert np.array_equal(be.read(dst, np.uint32, 64), x)


def test_roofline_time_is_the_tighter_roof():
    w = Work(bytes=8_000_000, flops=2_000_000)
    assert roofline.roofline_ms(w, 4_000_000, 1e9) == pytest.approx(2.0)  # memory-bound
    assert roofline.roofline_ms(w, 4e9, 1_000_000) == pytest.approx(2.0)  # compute-bound
    assert roofline.roofline_ms(w, None, None) is None


def test_the_throughput_table_reads_the_references():
    from harness.report import make_console, throughput_table

    rec = {"spec": {"executor": "embassy", "workload": "pipeline_k1", "dispatch": "direct",
                    "granularity": "thread"}, "status": "pass",
           "timing": {"median_ms": 2.0},
           "metrics": {"bytes": 8, "flops": 2, "gb_per_s": 1234.5, "gflop_per_s": 300.0,
                       "of_roofline": 0.5, "baseline_of_roofline": 0.9,
                       "references": {"tma": {"ms": 1.0, "of_roofline": 0.95},
                                      "copy": {"gb_per_s": 4400.0},
                                      "fma_peak": {"gflop_per_s": 61000.0}}}}
    assert throughput_table([{**rec, "metrics": {"bytes": 8}}]) is None  # not timed: no table
    console = make_console(piped_width=160)
    with console.capture() as cap:
        console.print(throughput_table([rec]))
    text = cap.get()
    for cell in ("1.23e+03", "50%", "90%", "95%", "0.50x", "4.4e+03", "61"):
        assert cell in text, cell


@requires_gpu
def test_a_pipeline_case_and_its_roofline_on_this_gpu(gpu_backend):
    r = run_case(CaseSpec("embassy", "pipeline_k16", "direct", "thread", ntasks=1 << 18),
                 gpu_backend, repeats=5, instrument=False)
    assert r.ok, r.failure
    m = r.extra["metrics"]
    refs = m["references"]
    assert {"copy", "fma_peak"} <= set(refs)
    rt = gpu_backend.rt
    # FP32: at most 128 FMA lanes per SM (2 FLOPs each) at no more than the max clock
    clock_ghz = (device_clock_mhz(rt) or 3000) / 1e3
    assert 0 < refs["fma_peak"]["gflop_per_s"] <= 1.05 * rt.sm_count * 128 * 2 * clock_ghz
    assert 0 < refs["copy"]["gb_per_s"] < 20_000
    assert 0 < m["of_roofline"] <= 1.05 and 0 < m["baseline_of_roofline"] <= 1.05
    if "tma" in refs:
        assert refs["tma"]["check"] == "pass" and 0 < refs["tma"]["of_roofline"] <= 1.05


def test_inspect_lists_the_reference_kernels(capsys):
    from harness.cli import main

    assert main(["inspect", "--workload", "pipeline_k16", "--executor", "block_on"]) == 0
    out = capsys.readouterr().out
    for name in ("pipeline_k16_baseline", "pipeline_k16_tma", "roofline_fma"):
        assert name in out, name
    tma_row = next(line for line in out.splitlines() if "pipeline_k16_tma" in line)
    assert "160" in tma_row  # at its own block size (1 producer + 4 consumer warps)
