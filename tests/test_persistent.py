"""The ``persistent`` executor: workers that claim roots until none is left, on the
emulator's one-block grid (so every worker claims several times): correct at every
granularity and dispatch, every root claimed once (the counter's final value says how
many claims there were), a matmul block worker walking two tiles through the same shared
stages; the claim in the emitted PTX. Every executor's conformance promises (deadlocks
end at the stop flag, Ready once): conformance/test_executors.py."""

from __future__ import annotations

import numpy as np
import pytest

from executors import get_executor
from executors.persistent import STATE_BYTES
from harness.backend import EmuBackend
from harness.cases import CaseSpec, _Case, build_case, run_case
from workloads import get_workload
from workloads.gemm_mma import THREADS


def _run(workload: str, dispatch: str, granularity: str, n: int, block: int):
    be = EmuBackend(max_steps=500_000_000, policy="random", seed=5)
    spec = CaseSpec("persistent", workload, dispatch, granularity, ntasks=n, block=block, seed=3)
    case = _Case(spec, be, "sm_90", False)
    res = case.check()
    counter = int(be.read(case.run.frames, np.uint32, 1)[0])
    return case, res, counter


@pytest.mark.parametrize("granularity,claim", [("thread", 1), ("warp", 32), ("block", 64)])
@pytest.mark.parametrize("dispatch", ["inline", "direct", "indirect"])
def test_one_block_claims_every_root_once(dispatch, granularity, claim):
    block, n = 64, 3 * 64 + 5  # a partial last claim
    case, res, counter = _run("yield_storm", dispatch, granularity, n, block)
    assert case.grid == 1  # the emulator fits one block: it walks every claim
    assert res.check == "pass", res.check
    # every worker's claims, the one that found nothing left included
    workers = block // claim
    assert counter == -(-n // claim) * claim + workers * claim, counter


def test_adjacent_pairs_wait_on_each_other_across_claims():
    """ping_pong's ping waits for its pong, one root later: a thread worker's claim and the
    next one's (fewer workers than pairs)."""
    _, res, _ = _run("ping_pong", "direct", "thread", 101, 32)
    assert res.check == "pass", res.check


def test_a_block_worker_walks_two_tiles_through_the_same_stages():
    """The tile's stage barriers are invalidated at its end and initialised again by the
    next tile (the emulator traps an init of a valid mbarrier)."""
    wl = get_workload("matmul_8192")
    n = wl.tasks(2 * THREADS)
    case, res, counter = _run("matmul_8192", "inline", "block", n, THREADS)
    assert case.grid == 1 and n == 2 * THREADS
    assert res.check == "pass", res.check
    assert counter == 3 * THREADS  # two tiles, then the claim that found none


def test_the_claim_in_the_ptx():
    for granularity, atoms in (("thread", 1), ("warp", 1), ("block", 1)):
        spec = CaseSpec("persistent", "seed_demo", "inline", granularity, ntasks=64, block=64)
        m, kernel, _, _ = build_case(spec, "sm_90", instrument=False)
        body = m.to_ptx().split(f".entry {kernel.name}")[1]
        assert body.count("atom.global.add.u32") == atoms, granularity
        assert kernel.state_bytes == STATE_BYTES
        if granularity == "warp":
            assert "shfl.sync.idx.b32" in body
        if granularity == "block":
            assert "barrier.sync" in body and "st.shared.u32" in body


def test_the_grid_is_what_fits_and_no_more_than_the_roots_need():
    ex = get_executor("persistent")
    spec = CaseSpec("persistent", "seed_demo", "direct", "thread", ntasks=64, block=32)
    _, kernel, _, _ = build_case(spec, "sm_90", instrument=False)

    class Fits:
        def resident_blocks(self, name, block, shared=0):
            assert name == kernel.name and block == 32
            return 10

    assert ex.grid(Fits(), kernel, 1 << 20, 32) == 10
    assert ex.grid(Fits(), kernel, 64, 32) == 2
    assert get_executor("block_on").grid(Fits(), kernel, 1 << 20, 32) == 1 << 15


def test_irregular_runs_and_counts_its_units():
    r = run_case(CaseSpec("persistent", "irregular", "inline", "thread", ntasks=80, block=32),
                 EmuBackend(), repeats=1, instrument=False)
    assert r.check == "pass" and r.baseline_check == "pass"
