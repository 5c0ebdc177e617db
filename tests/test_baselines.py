"""Workload baseline kernels on the emulator: the same outputs as ``reference()``, on the
first launch and on a relaunch over the same buffers (as the timing protocol relaunches)."""

import numpy as np
import pytest

from harness.backend import POISON, EmuBackend
from harness.ptx import Module
from workloads import get_workload

BLOCK = 32


def _run_twice(name: str, n: int, backend: EmuBackend) -> None:
    wl = get_workload(name)
    m = Module()
    kernel = wl.build_baseline(m)
    assert kernel, f"{name} has no baseline"
    backend.load(m)
    inputs = wl.make_inputs(np.random.default_rng(n), n)
    want = wl.reference(inputs, n)
    args, out = wl.upload(backend, inputs, n)
    grid = -(-n // BLOCK)
    for run in ("first", "relaunch"):
        backend.launch(kernel, grid, BLOCK, [args, np.uint32(n)], checked=True)
        got = wl.read_output(backend, out, n)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (f"{name} {run} launch, n={n}: {bad.size} wrong, first at "
                               f"{bad[0]}: {got[bad[0]]} != {want[bad[0]]}")
        # poison the outputs again so the relaunch must rewrite every one of them
        nbytes = n * wl.outputs_per_task * np.dtype(wl.output_dtype).itemsize
        backend.emu.write(out, np.full(nbytes, POISON, np.uint8))


@pytest.mark.parametrize("n", [37, 64])
@pytest.mark.parametrize("name", ["seed_demo", "yield_storm", "ping_pong", "fan_out"])
def test_baseline_matches_reference(name, n):
    _run_twice(name, n, EmuBackend())


@pytest.mark.parametrize("seed", [1, 2])
def test_ping_pong_baseline_under_random_scheduling(seed):
    """The hand-off must not depend on round-robin order: random interleavings of the
    spinning pairs still pass every token."""
    _run_twice("ping_pong", 37, EmuBackend(policy="random", seed=seed))
