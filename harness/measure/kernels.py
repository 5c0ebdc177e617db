"""The two helper kernels of the timing protocol, written with pollbench's PTX builder.

``pollbench_clock_probe(rec: u64, seq: u32, spin_ns: u64)`` — launched with one 1-thread
block per SM; the first block that runs on SM 0 for this ``seq`` (``atom.max`` on the
record's claim word) reads ``%globaltimer`` and ``%clock64``, spins ``spin_ns`` of
``%globaltimer``, reads both again, and stores them. One probe is launched right before a
sample's start event and one right after its stop event; the cycles of SM 0 over the
nanoseconds between the first reading of the first probe and the last reading of the
second are the SM clock the sample ran at (NVBench's ``gpu_frequency`` does the same).

``pollbench_block(flag: u64, timed_out: u64, timeout_ns: u64)`` — one thread that spins
until the host sets the mapped ``flag`` (a relaxed system-scope load), or until
``timeout_ns`` has passed, when it sets ``timed_out``. Launched before a sample is
enqueued, it keeps the stream from starting until everything is queued, so the events
time the GPU work rather than the host's launch latency (NVBench's ``blocking_kernel``).

Both run on the emulator too (``tests/test_measure.py``).
"""

from __future__ import annotations

import numpy as np

from harness.ptx import U32, U64, Builder, Mem, Module

__all__ = ["PROBE_KERNEL", "BLOCK_KERNEL", "RECORD_WORDS", "RECORD_BYTES", "build_module", "decode_record"]

PROBE_KERNEL = "pollbench_clock_probe"
BLOCK_KERNEL = "pollbench_block"

#: a probe record, as u64 words: claim (low 32 bits: the last seq claimed), t0, c0, t1, c1
RECORD_WORDS = 5
RECORD_BYTES = 8 * RECORD_WORDS


def _probe(m: Module) -> None:
    b = Builder.entry(m, PROBE_KERNEL, [("rec", U64), ("seq", U32), ("spin_ns", U64)])
    rec, seq, spin = b.param("rec"), b.param("seq"), b.param("spin_ns")
    on_sm0 = b.setp("eq", b.special("smid"), 0, type=U32)
    with b.if_(on_sm0):
        old = b.atom("global", "max", rec, seq, type=U32)
        with b.if_(b.setp("lt", old, seq, type=U32)):
            t0 = b.special("globaltimer")
            c0 = b.special("clock64")
            with b.loop() as lp:
                waited = b.sub(b.special("globaltimer"), t0, type=U64)
                lp.break_if(b.setp("ge", waited, spin, type=U64))
            c1 = b.special("clock64")
            t1 = b.special("globaltimer")
            for k, v in enumerate((t0, c0, t1, c1), start=1):
                b.st("global", Mem(rec, 8 * k), v, type=U64)
    b.ret()


def _blocker(m: Module) -> None:
    b = Builder.entry(m, BLOCK_KERNEL, [("flag", U64), ("timed_out", U64), ("timeout_ns", U64)])
    flag, timed_out, timeout = b.param("flag"), b.param("timed_out"), b.param("timeout_ns")
    t0 = b.special("globaltimer")
    with b.loop() as lp:
        v = b.ld("global", flag, U32, sem="relaxed", scope="sys")
        lp.break_if(b.setp("ne", v, 0, type=U32))
        late = b.setp("ge", b.sub(b.special("globaltimer"), t0, type=U64), timeout, type=U64)
        with b.if_(late):
            b.st("global", timed_out, 1, type=U32, sem="relaxed", scope="sys")
            b.ret()
    b.ret()


def build_module(arch: str = "sm_90") -> Module:
    """A PTX module holding the clock probe and the blocking kernel."""
    m = Module(arch=arch)
    _probe(m)
    _blocker(m)
    return m


def decode_record(words: np.ndarray) -> tuple[int, int, int, int, int]:
    """``(claimed_seq, t0, c0, t1, c1)`` from one probe record (5 u64 words)."""
    w = [int(x) for x in np.asarray(words, dtype=np.uint64)[:RECORD_WORDS]]
    return w[0] & 0xFFFFFFFF, w[1], w[2], w[3], w[4]
