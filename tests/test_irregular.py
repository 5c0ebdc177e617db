"""The ``irregular`` workload: heavy-tailed work and divergent kinds, correct (every
executor: the conformance suite) and in its static partition on the emulator; numpy's answer depends on every
input; the references table shows the static partition beside a case. ``-m gpu``: one case
on a card with its static partition checked and timed."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import EmuBackend
from harness.cases import CaseSpec, run_case
from harness.gpu.testing import requires_gpu
from harness.ptx import Module
from workloads import get_workload
from workloads.irregular import MAX_UNITS, MIN_UNITS, unit_numpy


def test_a_case_and_its_figures():  # every executor: conformance/test_executors.py
    r = run_case(CaseSpec("embassy", "irregular", "direct", "thread", ntasks=48, block=32),
                 EmuBackend(), repeats=1, instrument=False)
    assert r.check == "pass" and r.baseline_check == "pass"
    assert r.extra["metrics"]["units"] >= 48 * MIN_UNITS


def test_the_static_partition_on_the_emulator():
    wl = get_workload("irregular")
    m = Module(arch="sm_90")
    wl.build_references(m)
    be = EmuBackend(max_steps=50_000_000)
    be.load(m)
    n = 200  # more tasks than the 2 x 32 threads: each thread loops over its share
    inputs = wl.make_inputs(np.random.default_rng(4), n)
    args, out = wl.upload(be, inputs, n)
    be.launch(wl.static_kernel, 2, 32, [args, np.uint32(n)], checked=True)
    assert np.array_equal(be.read(out, np.uint32, n), wl.reference(inputs, n))


def test_the_dynamic_partition_on_the_emulator_twice_with_no_reset_between():
    wl = get_workload("irregular")
    m = Module(arch="sm_90")
    wl.build_references(m)
    be = EmuBackend(max_steps=50_000_000, policy="random", seed=5)
    be.load(m)
    n = 200
    inputs = wl.make_inputs(np.random.default_rng(6), n)
    claims = be.to_device(np.array([0, 0], np.uint32))
    for run in range(2):  # the last thread out zeroes the counters for the next run
        args, out = wl.upload(be, inputs, n)
        be.launch(wl.dynamic_kernel, 2, 32, [args, np.uint32(n), claims], checked=True)
        assert np.array_equal(be.read(out, np.uint32, n), wl.reference(inputs, n)), run
        assert (be.read(claims, np.uint32, 2) == 0).all(), run


def test_work_is_heavy_tailed_and_kinds_diverge():
    ins = get_workload("irregular").make_inputs(np.random.default_rng(1), 1 << 16)
    units = ins["units"]
    assert units.min() >= MIN_UNITS and units.max() <= MAX_UNITS
    assert units.max() > 50 * np.median(units)  # a few tasks do far more than the median
    assert set(np.unique(ins["kind"])) == {0, 1, 2}
    assert (ins["seed"] != 0).all()


def test_numpys_answer_depends_on_every_input():
    wl = get_workload("irregular")
    ins = wl.make_inputs(np.random.default_rng(2), 64)
    want = wl.reference(ins, 64)
    x = np.arange(1, 9, dtype=np.uint64) * 0x9E3779B9 & 0xFFFFFFFF
    kinds = [unit_numpy(x, np.full(8, k)) for k in range(3)]
    assert not np.array_equal(kinds[0], kinds[1]) and not np.array_equal(kinds[1], kinds[2])
    for key, change in (("kind", lambda v: (v + 1) % 3), ("units", lambda v: v + 1),
                        ("seed", lambda v: v ^ 1)):
        other = {k: v.copy() for k, v in ins.items()}
        other[key][5] = change(other[key][5])
        got = wl.reference(other, 64)
        assert got[5] != want[5] and np.array_equal(np.delete(got, 5), np.delete(want, 5)), key


def test_the_references_table_shows_the_static_partition():
    from harness.report import make_console, references_table

    rec = {"spec": {"executor": "embassy", "workload": "irregular", "dispatch": "direct",
                    "granularity": "thread"}, "status": "pass",
           "timing": {"median_ms": 2.0}, "baseline_timing": {"median_ms": 1.0},
           "metrics": {"references": {"static": {"ms": 3.0, "check": "pass"}}}}
    assert references_table([{**rec, "metrics": {}}]) is None
    console = make_console(piped_width=160)
    with console.capture() as cap:
        console.print(references_table([rec]))
    text = cap.get()
    assert "static" in text and "1.50x" in text and "3.00x" in text


@requires_gpu
def test_an_irregular_case_and_its_static_partition_on_this_gpu(gpu_backend):
    r = run_case(CaseSpec("embassy", "irregular", "direct", "thread", ntasks=1 << 16),
                 gpu_backend, repeats=5, instrument=False)
    assert r.ok, r.failure
    for name in ("static", "dynamic"):
        ref = r.extra["metrics"]["references"][name]
        assert ref["check"] == "pass" and ref["ms"] > 0, name
    assert r.time_ms > 0
