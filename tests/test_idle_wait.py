"""The ``idle_wait`` workload (every executor: the conformance suite): roles, delays and
numpy's answer; a case on the emulator passes and records one latency per waiter and run.
``-m gpu``: a case on a card."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import EmuBackend
from harness.cases import CaseSpec, run_case
from harness.gpu.testing import requires_gpu
from workloads import get_workload
from workloads.idle_wait import EMU_DELAYS, GPU_DELAYS_NS, GROUP, WAITERS


def test_roles_and_numpys_answer():
    wl = get_workload("idle_wait")
    n = 2 * GROUP + 3  # the last group: a setter and two waiters
    setter, waiter, released = wl.roles(n)
    assert setter.sum() == 3 and waiter.sum() == 2 * WAITERS + 2
    assert list(released) == [WAITERS, WAITERS, 2]
    ins = wl.make_inputs(np.random.default_rng(1), n)
    want = wl.reference(ins, n)
    assert (want[waiter] == ins["token"][waiter]).all() and (ins["token"] != 0).all()
    assert (want[~(setter | waiter)] == 0).all()


def test_delays_follow_the_size():
    wl = get_workload("idle_wait")
    small = wl.make_inputs(np.random.default_rng(2), 64)["delay"]
    assert EMU_DELAYS[0] <= small.min() and small.max() <= EMU_DELAYS[1]
    big = wl.make_inputs(np.random.default_rng(3), 1 << 16)["delay"]
    assert GPU_DELAYS_NS[0] <= big.min() and big.max() <= GPU_DELAYS_NS[1]
    decades = np.floor(np.log10(big)).astype(int)
    assert set(decades) == {4, 5, 6}  # log-uniform: 10 µs .. 10 ms, every decade drawn


@pytest.mark.parametrize("executor,dispatch", [("embassy", "direct"), ("backoff", "direct"),
                                               ("block_on", "inline")])
def test_a_case_records_one_latency_per_waiter(executor, dispatch):
    r = run_case(CaseSpec(executor, "idle_wait", dispatch, "thread", ntasks=2 * GROUP, block=128),
                 EmuBackend(max_steps=50_000_000), repeats=1, instrument=False)
    assert r.check == "pass" and r.baseline_check == "pass"
    m = r.extra["metrics"]
    assert m["waiters"] == 2 * WAITERS and m["latency_samples"] == 2 * WAITERS
    assert 0 < m["wake_to_poll_ns_mean"] <= m["wake_to_poll_ns_max"]


@requires_gpu
def test_an_idle_wait_case_on_this_gpu(gpu_backend):
    r = run_case(CaseSpec("backoff", "idle_wait", "direct", "thread", ntasks=1 << 14),
                 gpu_backend, repeats=3, instrument=False)
    assert r.ok, r.failure
    m = r.extra["metrics"]
    assert m["latency_samples"] >= m["waiters"] and m["wake_to_poll_ns_mean"] > 0
