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


def test_the_timing_phase_times_the_executor_and_its_baseline(monkeypatch):
    """run_case's GPU phases, on the emulator: the timing protocol and the NVML window are
    stand-ins that call what they were given, so the wiring (which kernel is enqueued with
    which arguments, where the figures land) is checked without a GPU."""
    from harness import cases
    from harness.backend import EmuBackend
    from harness.measure import summarize

    calls = []

    def fake_time(backend, enqueue, config, graph_safe):
        enqueue()  # a real run: the emulator executes it
        calls.append(("time", graph_safe, backend.last.kernel if backend.last else None))
        return summarize([1.0 + len(calls)])

    def fake_energy(backend, enqueue, run_ms, ntasks):
        enqueue()
        calls.append(("energy", run_ms, ntasks))
        return {"energy_per_task_j": 1e-9}

    class LooksLikeGpu(EmuBackend):
        name = "gpu"

    monkeypatch.setattr(cases, "_time", fake_time)
    monkeypatch.setattr(cases, "_energy_window", fake_energy)
    spec = cases.CaseSpec("embassy", "seed_demo", "direct", "thread", ntasks=32, block=32)
    r = cases.run_case(spec, LooksLikeGpu(), instrument=False)
    assert r.check == "pass" and r.baseline_check == "pass"
    assert [c[0] for c in calls] == ["time", "energy", "time"]
    assert calls[0][2].startswith("embassy_") and calls[2][2] == "seed_demo_baseline"
    assert calls[1][1:] == (2.0, 32)
    assert (r.time_ms, r.baseline_ms) == (2.0, 4.0)
    assert r.extra["nvml"] == {"energy_per_task_j": 1e-9}
