"""A countdown latch: one task awaits the count reaching zero, others count it down (how a
task joins children it spawned: ``JoinSet`` without a heap).

Layout (8 bytes in global memory)::

    +0 count u32    set by the owner before anyone counts down
    +4 waiter u32   task + 1 of the parked awaiter (0: none)

No lost wake-up, by the same store-buffering argument as ``harness.futures.channel``: the
awaiter stores its waiter then ``fence.sc`` then re-reads the count; ``count_down`` does its
``atom.add`` (acq_rel) then ``fence.sc`` then reads the waiter.
"""

from __future__ import annotations

from harness.futures.core import FnBuilder, FutureCall
from harness.futures.lib import LeafFuture
from harness.ptx.types import U32, U64

COUNT, WAITER = 0, 4
LATCH_BYTES = 8


def _wait_body(f: FnBuilder):
    f.new_state()
    latch = f.arg("latch")

    def zero():
        return f.setp("eq", f.ld("global", latch, U32, sem="acquire", scope="gpu"), 0)

    with f.if_(zero()):
        f.ready()
    f.st("global", f.add(latch, WAITER, type=U64), f.add(f.task, 1), sem="relaxed", scope="gpu")
    f.fence("sc", "gpu")
    with f.if_(zero()):
        f.ready()
    f.pending()


WAIT = LeafFuture("latch_wait", [("latch", U64)], None, _wait_body)


def wait(latch) -> FutureCall:
    """Ready once the latch's count is 0."""
    return WAIT(latch)


def count_down(f: FnBuilder, latch) -> None:
    """``count -= 1``; the one that reaches 0 wakes the parked awaiter (inline code, not a
    future: it never waits)."""
    old = f.atom("global", "add", latch, f.mov(0xFFFFFFFF, type=U32), type=U32, sem="acq_rel",
                 scope="gpu")
    with f.if_(f.setp("eq", old, 1)):
        f.fence("sc", "gpu")
        w = f.ld("global", f.add(latch, WAITER, type=U64), U32, sem="relaxed", scope="gpu")
        with f.if_(f.setp("ne", w, 0)):
            f.wake(f.sub(w, 1))


__all__ = ["wait", "count_down", "LATCH_BYTES", "COUNT", "WAITER"]
