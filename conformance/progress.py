"""Forward progress: what an executor that spins may rely on, each kernel bounded by a
timeout of its own (it reports instead of hanging) and launched under the watchdog.

- ``coresident``: how many blocks are resident at once, discovered by a ticket protocol
  (Sorensen et al.'s occupancy discovery: blocks that arrive while the first block holds the
  window open take a ticket and wait; later ones leave) against the occupancy API.
- ``spin_barrier``: an inter-block barrier that spins on a global counter terminates when
  the grid is within the discovered bound.
- ``warp_spin_lock``: every lane of a warp takes one global spin lock in turn; terminates
  only under independent thread scheduling (sm_70+); the counter it guards checks mutual
  exclusion.
- ``divergent_paths``: lane 0 spins on a flag that lane 1 sets on the other side of a
  branch; both progress only when the scheduler interleaves diverged paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.ptx import Builder, Module
from harness.ptx.types import B32, U32, U64

TIMEOUT_NS = 200_000_000  # a kernel's own bound: it reports a timeout, then exits
WINDOW_NS = 2_000_000  # how long the first block keeps the discovery window open
BLOCK = 256


def _elapsed(b: Builder, t0):
    return b.sub(b.special("globaltimer"), t0, type=U64)


def _spin_until(b: Builder, done_fn, timeout):
    """Spin until ``done_fn()`` (a predicate) or ``timeout`` ns; returns the timed-out
    flag (u32: 1 when it gave up)."""
    t0 = b.special("globaltimer")
    late = b.mov(0, type=U32)
    with b.loop() as lp:
        lp.break_if(done_fn())
        with b.if_(b.setp("ge", _elapsed(b, t0), timeout, type=U64)):
            b.mov(1, type=U32, dst=late)
        lp.break_if(b.setp("ne", late, 0, type=U32))
    return late


def _discover(m: Module) -> None:
    b = Builder.entry(m, "fp_discover", [("count", U64), ("flag", U64), ("window", U64),
                                         ("timeout", U64), ("late", U64)])
    count, flag = b.param("count"), b.param("flag")
    with b.if_(b.setp("eq", b.special("tid.x"), 0, type=U32)):
        closed = b.ld("global", flag, U32, sem="acquire", scope="gpu")
        with b.if_(b.setp("eq", closed, 0, type=U32)):
            ticket = b.atom("global", "add", count, b.mov(1, type=U32), type=U32,
                            sem="acq_rel", scope="gpu")
            with b.if_(b.setp("eq", ticket, 0, type=U32)):
                t0 = b.special("globaltimer")
                with b.loop() as lp:
                    lp.break_if(b.setp("ge", _elapsed(b, t0), b.param("window"), type=U64))
                b.st("global", flag, b.mov(1, type=U32), type=U32, sem="release", scope="gpu")
            with b.if_(b.setp("ne", ticket, 0, type=U32)):
                late = _spin_until(b, lambda: b.setp("ne", b.ld("global", flag, U32,
                                                                sem="acquire", scope="gpu"),
                                                     0, type=U32), b.param("timeout"))
                b.red("global", "add", b.param("late"), late, type=U32)
    b.ret()


def _barrier(m: Module) -> None:
    b = Builder.entry(m, "fp_barrier", [("count", U64), ("timeout", U64), ("late", U64)])
    count = b.param("count")
    with b.if_(b.setp("eq", b.special("tid.x"), 0, type=U32)):
        b.red("global", "add", count, b.mov(1, type=U32), type=U32, sem="release", scope="gpu")
        n = b.special("nctaid.x")
        late = _spin_until(b, lambda: b.setp("ge", b.ld("global", count, U32, sem="acquire",
                                                        scope="gpu"), n, type=U32),
                           b.param("timeout"))
        b.red("global", "add", b.param("late"), late, type=U32)
    b.bar_sync(0)
    b.ret()


def _lock(m: Module) -> None:
    b = Builder.entry(m, "fp_lock", [("lock", U64), ("counter", U64), ("timeout", U64),
                                     ("late", U64)])
    lock, counter = b.param("lock"), b.param("counter")
    t0 = b.special("globaltimer")
    late = b.mov(0, type=U32)
    with b.loop() as lp:
        old = b.atom("global", "cas", lock, b.mov(0, type=B32), b.mov(1, type=B32), type=B32,
                     sem="acquire", scope="gpu")
        got = b.setp("eq", old, 0, type=B32)
        with b.if_(got):
            # the critical section: a plain read-modify-write that only the lock makes exact
            b.st("global", counter, b.add(b.ld("global", counter, U32), 1, type=U32), type=U32)
            b.st("global", lock, b.mov(0, type=U32), type=U32, sem="release", scope="gpu")
        lp.break_if(got)
        with b.if_(b.setp("ge", _elapsed(b, t0), b.param("timeout"), type=U64)):
            b.mov(1, type=U32, dst=late)
        lp.break_if(b.setp("ne", late, 0, type=U32))
    b.red("global", "add", b.param("late"), late, type=U32)
    b.ret()


def _diverge(m: Module) -> None:
    b = Builder.entry(m, "fp_diverge", [("flags", U64), ("timeout", U64), ("late", U64)])
    warp = b.div(b.global_index(), 32, type=U32)
    flag = b.element_addr(b.param("flags"), warp, 4)
    lane = b.and_(b.special("tid.x"), 31, type=U32)
    with b.if_(b.setp("eq", lane, 0, type=U32)):
        late = _spin_until(b, lambda: b.setp("ne", b.ld("global", flag, U32, sem="acquire",
                                                        scope="gpu"), 0, type=U32),
                           b.param("timeout"))
        b.red("global", "add", b.param("late"), late, type=U32)
    with b.if_(b.setp("eq", lane, 1, type=U32)):
        b.st("global", flag, b.mov(1, type=U32), type=U32, sem="release", scope="gpu")
    b.ret()


def build_module(arch: str = "sm_90") -> Module:
    """Every forward-progress kernel in one module."""
    m = Module(arch=arch)
    for emit in (_discover, _barrier, _lock, _diverge):
        emit(m)
    return m


@dataclass
class Progress:
    """One forward-progress check: what it found and whether that is what it should be."""

    name: str
    verdict: str  # "pass", or what went wrong
    figures: dict

    def to_dict(self) -> dict:
        """The row of the conform document."""
        return {"name": self.name, "verdict": self.verdict, **self.figures}


def _words(backend, n: int) -> int:
    p = backend.alloc(4 * n)
    backend.zero(p, 4 * n)
    return p


def run_all(backend, timeout_ns: int = TIMEOUT_NS) -> list:
    """Every check, in order (the barrier uses the discovered bound)."""
    backend.load(build_module(getattr(backend, "arch", "sm_90")))
    gpu = backend.name == "gpu"
    out = []

    # co-resident blocks
    if gpu:
        expected = backend.resident_blocks("fp_discover", BLOCK)
        grid, block, window = 4 * expected, BLOCK, WINDOW_NS
    else:
        expected, grid, block, window = None, 4, 32, 1000
    count, flag, late = _words(backend, 1), _words(backend, 1), _words(backend, 1)
    backend.launch("fp_discover", grid, block, [count, flag, np.uint64(window),
                                                 np.uint64(timeout_ns), late], checked=True)
    found = int(backend.read(count, np.uint32, 1)[0])
    waited_out = int(backend.read(late, np.uint32, 1)[0])
    if waited_out:
        verdict = f"{waited_out} ticket holders timed out waiting for the window to close"
    elif expected is not None and found > expected:
        verdict = f"FAIL: {found} blocks resident at once, more than the occupancy API's {expected}"
    elif expected is not None and found < expected:
        verdict = (f"{found} of the occupancy API's {expected} blocks were resident within "
                   f"{window / 1e6:g} ms (others were still being scheduled, or the card is shared)")
    else:
        verdict = "pass"
    out.append(Progress("coresident", verdict, {"discovered": found, "occupancy_api": expected,
                                                "grid": grid, "block": block}))

    # an inter-block spin barrier within the discovered bound
    blocks = max(1, found)
    count, late = _words(backend, 1), _words(backend, 1)
    backend.launch("fp_barrier", blocks, block, [count, np.uint64(timeout_ns), late],
                   checked=True)
    n_late = int(backend.read(late, np.uint32, 1)[0])
    out.append(Progress("spin_barrier", "pass" if n_late == 0 else
                        f"FAIL: {n_late} of {blocks} blocks timed out at the barrier",
                        {"blocks": blocks}))

    # an intra-warp spin lock
    warps = 4 * (backend.rt.sm_count if gpu else 1)
    lock, counter, late = _words(backend, 1), _words(backend, 1), _words(backend, 1)
    backend.launch("fp_lock", warps, 32, [lock, counter, np.uint64(timeout_ns), late],
                   checked=True)
    total = int(backend.read(counter, np.uint32, 1)[0])
    n_late = int(backend.read(late, np.uint32, 1)[0])
    if n_late:
        verdict = f"FAIL: {n_late} of {32 * warps} threads never took the lock (no independent thread scheduling?)"
    elif total != 32 * warps:
        verdict = f"FAIL: the lock let {32 * warps - total} increments collide"
    else:
        verdict = "pass"
    out.append(Progress("warp_spin_lock", verdict, {"threads": 32 * warps, "count": total}))

    # divergent paths of one warp
    warps = 2 * (backend.rt.sm_count if gpu else 1)
    flags, late = _words(backend, warps), _words(backend, 1)
    backend.launch("fp_diverge", warps, 32, [flags, np.uint64(timeout_ns), late], checked=True)
    n_late = int(backend.read(late, np.uint32, 1)[0])
    out.append(Progress("divergent_paths", "pass" if n_late == 0 else
                        f"{n_late} of {warps} warps: the spinning path starved the other",
                        {"warps": warps}))
    return out
