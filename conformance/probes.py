"""Probes: the hardware figures the executors' defaults were derived from, measured on this
GPU and printed beside the H100's (architecture §11), so a user sees when a default no
longer fits.

- ``nanosleep``: the time one ``nanosleep(t)`` takes, for several ``t`` (backoff's min is
  128 ns because the H100 sleeps the next power of two: 100 -> 128);
- dependent atomic latency, global and shared: a pointer chase through ``atom.add x, 0``
  (backoff's min sleep is about one dependent global atomic: a shorter sleep saves nothing);
- atomic throughput on one contended address and on distinct addresses (why the graph
  executor counts finished tasks per block, not per task);
- launch, captured-graph-node and WHILE-iteration latency (backoff's max sleep is about one
  WHILE round: an idle worker then adds at most what the graph executor pays per round).
"""

from __future__ import annotations

import numpy as np

from harness.ptx import Builder, Module
from harness.ptx.types import U32, U64

SLEEPS_NS = (32, 100, 1000, 4096, 10000, 100000)
CHASE_WORDS = 1024  # the chase's ring (words); the shared copy fits easily
CHASE_STEPS = 4096
THROUGHPUT_ITERS = 64

# What the defaults were derived from (architecture §11, H100 80GB HBM3, 1980 MHz).
H100 = {
    "nanosleep_100ns": 128.0, "nanosleep_1000ns": 1024.0,
    "atomic_global_cycles": 276.0, "atomic_shared_cycles": 30.0,
    "contended_per_s": 1.4e9, "distinct_per_s": 4.9e11,
    "launch_us": 9.0, "graph_node_us": 0.78, "while_iteration_us": 4.1,
}
DERIVED = {
    "atomic_global_cycles": "backoff's min sleep (128 ns): about one dependent global atomic",
    "nanosleep_100ns": "backoff's min sleep: the hardware rounds a sleep up to a power of two",
    "while_iteration_us": "backoff's max sleep (4096 ns): about one WHILE round",
    "contended_per_s": "the graph executor adds finished tasks once per block, not per task",
}


def _sleep(m: Module) -> None:
    b = Builder.entry(m, "pr_sleep", [("ns", U32), ("iters", U32), ("out", U64)])
    i = b.mov(0, type=U32)
    t0 = b.special("globaltimer")
    with b.loop() as lp:
        lp.break_if(b.setp("ge", i, b.param("iters"), type=U32))
        b.nanosleep(b.param("ns"))
        b.add(i, 1, dst=i)
    b.st("global", b.param("out"), b.sub(b.special("globaltimer"), t0, type=U64), type=U64)
    b.ret()


def _chase(m: Module, space: str) -> None:
    """One thread: ``steps`` dependent ``atom.add [ring + 4 * i], 0`` (the ring holds the
    next index), timed with ``clock64``."""
    b = Builder.entry(m, f"pr_chase_{space}", [("ring", U64), ("steps", U32), ("out", U64)])
    ring = b.param("ring")
    if space == "shared":
        smem = Builder.shared(m, "pr_ring", 4 * CHASE_WORDS, 16)
        base = b.mov(smem, type=U32)
        k = b.mov(0, type=U32)
        with b.loop() as lp:  # copy the ring in
            lp.break_if(b.setp("ge", k, CHASE_WORDS, type=U32))
            b.st("shared", b.mad(k, 4, base, type=U32),
                 b.ld("global", b.element_addr(ring, k, 4), U32), type=U32)
            b.add(k, 1, dst=k)

        def addr(idx):
            return b.mad(idx, 4, base, type=U32)
    else:
        def addr(idx):
            return b.element_addr(ring, idx, 4)
    idx = b.mov(0, type=U32)
    i = b.mov(0, type=U32)
    c0 = b.special("clock64")
    with b.loop() as lp:
        lp.break_if(b.setp("ge", i, b.param("steps"), type=U32))
        b.atom(space, "add", addr(idx), b.mov(0, type=U32), type=U32, dst=idx)
        b.add(i, 1, dst=i)
    c1 = b.special("clock64")
    out = b.param("out")
    b.st("global", out, b.sub(c1, c0, type=U64), type=U64)
    b.st("global", b.add(out, 8, type=U64), b.cvt(idx, U64), type=U64)  # keeps the chase live
    b.ret()


def _hammer(m: Module, distinct: bool) -> None:
    name = "pr_distinct" if distinct else "pr_contended"
    b = Builder.entry(m, name, [("target", U64), ("iters", U32)])
    target = b.param("target")
    if distinct:
        target = b.element_addr(target, b.global_index(), 4)
    i = b.mov(0, type=U32)
    with b.loop() as lp:
        lp.break_if(b.setp("ge", i, b.param("iters"), type=U32))
        b.red("global", "add", target, b.mov(1, type=U32), type=U32)
        b.add(i, 1, dst=i)
    b.ret()


def build_module(arch: str = "sm_90") -> Module:
    """Every probe kernel in one module."""
    m = Module(arch=arch)
    _sleep(m)
    _chase(m, "global")
    _chase(m, "shared")
    _hammer(m, False)
    _hammer(m, True)
    return m


def _probe(name: str, value, unit: str, h100_key: str | None = None) -> dict:
    row = {"name": name, "value": value, "unit": unit,
           "h100": H100.get(h100_key) if h100_key else None,
           "derived": DERIVED.get(h100_key, "") if h100_key else ""}
    return row


def run_all(backend) -> list:
    """Every probe, as rows ``{name, value, unit, h100, derived}``; GPU-only figures (clock
    cycles, throughput, launch latency) are None on the emulator."""
    backend.load(build_module(getattr(backend, "arch", "sm_90")))
    gpu = backend.name == "gpu"
    rows = []
    out = backend.alloc(16)
    for ns in SLEEPS_NS:
        iters = max(4, min(1000, 10_000_000 // ns)) if gpu else 2
        backend.launch("pr_sleep", 1, 1, [np.uint32(ns), np.uint32(iters), out], checked=True)
        per = float(backend.read(out, np.uint64, 1)[0]) / iters
        key = {100: "nanosleep_100ns", 1000: "nanosleep_1000ns"}.get(ns)
        rows.append(_probe(f"nanosleep({ns} ns)", per, "ns per sleep", key))
    ring = backend.to_device(((np.arange(CHASE_WORDS) + 97) % CHASE_WORDS).astype(np.uint32))
    steps = CHASE_STEPS if gpu else 16
    for space in ("global", "shared"):
        backend.launch(f"pr_chase_{space}", 1, 1, [ring, np.uint32(steps), out], checked=True)
        cycles = float(backend.read(out, np.uint64, 1)[0]) / steps
        rows.append(_probe(f"dependent {space} atomic", cycles if gpu else None, "cycles",
                           f"atomic_{space}_cycles"))
    grid = 4 * backend.rt.sm_count if gpu else 1
    block = 256 if gpu else 32
    for name, distinct in (("contended", False), ("distinct", True)):
        n = grid * block
        target = backend.alloc(4 * (n if distinct else 1))
        backend.zero(target, 4 * (n if distinct else 1))
        kernel = "pr_distinct" if distinct else "pr_contended"
        backend.launch(kernel, grid, block, [target, np.uint32(THROUGHPUT_ITERS)])  # warm-up
        backend.zero(target, 4 * (n if distinct else 1))
        r = backend.launch(kernel, grid, block, [target, np.uint32(THROUGHPUT_ITERS)])
        got = backend.read(target, np.uint32, n if distinct else 1)
        want = THROUGHPUT_ITERS if distinct else n * THROUGHPUT_ITERS
        if not (got == want).all():
            raise AssertionError(f"{kernel}: atomics lost ({got[:4]} != {want})")
        rate = n * THROUGHPUT_ITERS / (r.time_ms * 1e-3) if r.time_ms else None
        rows.append(_probe(f"{name} atomic throughput", rate, "atomics/s", f"{name}_per_s"))
    if gpu:
        from harness.gpu.selftest import (timing_empty_launch, timing_graph_node,
                                          timing_while_iteration)

        rt = backend.rt
        rows.append(_probe("launch from Python", timing_empty_launch(rt), "µs", "launch_us"))
        rows.append(_probe("captured graph node", timing_graph_node(rt), "µs", "graph_node_us"))
        rows.append(_probe("WHILE iteration", timing_while_iteration(rt), "µs",
                           "while_iteration_us"))
    return rows
