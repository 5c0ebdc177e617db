"""``backoff``: ``embassy`` whose idle workers sleep with exponential ``nanosleep`` instead of
spinning on the swap (architecture §5): after an empty swap a worker sleeps ``s`` ns, ``s`` starting
at ``min_ns`` and growing by ``factor`` per empty swap up to ``max_ns``; a non-empty batch
resets it to ``min_ns``. What it trades: wake-to-poll latency (a woken task waits out its
worker's current sleep) against issue slots, memory traffic and power left to other warps.

Defaults (``DEFAULT_MIN_NS``, ``DEFAULT_MAX_NS``, ``DEFAULT_FACTOR``), and why:
- min 128 ns: about one dependent global atomic on the H100 (≈276 cycles ≈ 140 ns at
  1.98 GHz, architecture §11): a sleep shorter than one empty swap saves nothing; and the H100
  sleeps the next power of two (100 -> 128), so 128 is what any min in 65..128 gives.
- max 4096 ns: about one WHILE-graph round (≈4.1 µs, §11): an idle worker then adds at most
  what the ``graph`` executor pays per round anyway.
- factor 2: the hardware rounds to powers of two, so a smaller factor repeats sleeps.

Measured since (``pollbench conform``'s probes, H200, results/notes/2026-12-02-h200-conform.md):
the hardware sleeps the smallest power of two *above* the request (32 -> 64, 4096 -> 8192),
so these defaults sleep twice as long as stated: 256 ns to 8.2 µs, the max above a WHILE
round (4.28 µs there). Requesting 2^k - 1 would give the intended sleeps; the defaults stay
until a run of the backoff cases and the sweep measures the change.
``experiments.backoff_sweep`` measures latency against co-resident throughput for other
choices.
"""

from __future__ import annotations

from executors.embassy import Embassy
from harness.errors import PollbenchError
from harness.ptx import Builder
from harness.ptx.types import U32

DEFAULT_MIN_NS, DEFAULT_MAX_NS, DEFAULT_FACTOR = 128, 4096, 2.0


class Backoff(Embassy):
    name = "backoff"

    def __init__(self, min_ns: int = DEFAULT_MIN_NS, max_ns: int = DEFAULT_MAX_NS,
                 factor: float = DEFAULT_FACTOR):
        if not 0 < min_ns <= max_ns or factor < 1:
            raise PollbenchError(f"backoff needs 0 < min_ns <= max_ns and factor >= 1 "
                             f"(got {min_ns}, {max_ns}, {factor})")
        self.min_ns, self.max_ns, self.factor = int(min_ns), int(max_ns), float(factor)
        self.summary = (f"embassy whose idle workers sleep with exponential nanosleep "
                        f"(min {self.min_ns} ns, max {self.max_ns} ns, factor {self.factor:g})")

    @property
    def params(self) -> dict:
        return {"min_ns": self.min_ns, "max_ns": self.max_ns, "factor": self.factor}

    def kernel_name(self, granularity, dispatch, root, instrument) -> str:
        base = super().kernel_name(granularity, dispatch, root, False)
        tag = f"_s{self.min_ns}_{self.max_ns}_{int(round(self.factor * 256))}"
        return base + tag + ("_instr" if instrument else "")

    def idle_setup(self, b: Builder):
        return b.mov(self.min_ns, type=U32)

    def on_idle(self, b: Builder, sleep) -> None:
        b.nanosleep(sleep)
        # sleep = min(sleep * factor, max), factor in 8.8 fixed point (exact for integers)
        f = int(round(self.factor * 256))
        grown = b.shr(b.mul(b.cvt(sleep, "u64"), f, mode="lo", type="u64"), 8, type="u64")
        b.cvt(b.min(grown, self.max_ns, type="u64"), U32, dst=sleep)

    def on_busy(self, b: Builder, sleep) -> None:
        b.mov(self.min_ns, type=U32, dst=sleep)
