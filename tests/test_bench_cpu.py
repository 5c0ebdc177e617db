"""CPU-side speed figures, printed by pytest-benchmark (no GPU; nothing asserts a time):
how fast the emulator steps and how long nvJitLink takes for a case's module."""

import numpy as np

from harness.backend import EmuBackend
from harness.cases import CaseSpec, build_case
from harness.compile import compile_ptx


def test_emulator_instructions_per_second(benchmark):
    m, kernel, _, wl = build_case(CaseSpec("block_on", "seed_demo", "direct", "warp", 64, 64))
    n = 64

    def run():
        be = EmuBackend()
        be.load(m)
        args, out = wl.upload(be, wl.make_inputs(np.random.default_rng(0), n), n)
        return be.launch(kernel.name, 1, n, [be.alloc(kernel.frames_bytes(n)), np.uint32(n), args,
                                              be.stop_ptr(), 0]).instructions

    instructions = benchmark.pedantic(run, rounds=3, iterations=1)
    assert instructions > 0
    benchmark.extra_info["instructions"] = instructions
    benchmark.extra_info["instructions_per_s"] = instructions / benchmark.stats.stats.median


def test_nvjitlink_compile_of_a_case_module(benchmark):
    m, kernel, _, _ = build_case(CaseSpec("embassy", "yield_storm", "direct", "thread"))
    ptx = m.to_ptx()
    compiled = benchmark.pedantic(lambda: compile_ptx(ptx, "sm_90", cache=False), rounds=3,
                                  iterations=1)
    assert compiled.resources[kernel.name].registers > 0
    benchmark.extra_info["ptx_lines"] = ptx.count("\n")
