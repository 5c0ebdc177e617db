"""A single-producer single-consumer channel (architecture §4's ``channel`` leaf futures): a ring
of ``cap`` u32 slots in global memory with one waiter slot per side, so the sender can wake a
parked receiver and the receiver a parked sender.

Layout (``channel_bytes(cap)``, 16-byte aligned; all zero = an empty channel)::

    +0  head u32         messages received (written by the receiver only)
    +4  tail u32         messages sent (written by the sender only)
    +8  recv_waiter u32  task + 1 of a receiver parked on an empty ring (0: none)
    +12 send_waiter u32  task + 1 of a sender parked on a full ring (0: none)
    +16 slots[cap] u32

``head``/``tail`` only grow (u32 wrap-around is fine: only their difference matters), so a
channel left empty by one run is an empty channel for the next.

No lost wake-up: parking is "store my waiter; ``fence.sc``; re-check the ring", and
publishing is "store the index; ``fence.sc``; take the waiter (``atom.exch`` 0) and wake it".
With a sequentially-consistent fence on both sides (the store-buffering pattern) at least one
side sees the other's store: either the parked side finds the ring changed, or the publishing
side finds the waiter. A stale waiter only costs a spurious wake, which futures tolerate.
"""

from __future__ import annotations

from harness.futures.core import FnBuilder, FutureBuildError, FutureCall
from harness.futures.lib import LeafFuture
from harness.ptx.types import B32, U32, U64

HEAD, TAIL, RECV_WAITER, SEND_WAITER, SLOTS = 0, 4, 8, 12, 16


def channel_bytes(cap: int) -> int:
    return -(-(SLOTS + 4 * cap) // 16) * 16


def _at(f: FnBuilder, ch, off: int):
    return f.add(ch, off, type=U64) if off else ch


def _wake_waiter(f: FnBuilder, ch, slot: int) -> None:
    """Take the other side's waiter, if any, and wake it (after the caller's fence.sc)."""
    w = f.atom("global", "exch", _at(f, ch, slot), f.mov(0, type=U32), type=B32,
               sem="relaxed", scope="gpu")
    with f.if_(f.setp("ne", w, 0, type=B32)):
        f.wake(f.sub(w, 1, type=U32))


def _park(f: FnBuilder, ch, slot: int) -> None:
    """Register this task as the waiter in ``slot``, then order that store before the
    re-check the caller makes next."""
    f.st("global", _at(f, ch, slot), f.add(f.task, 1), sem="relaxed", scope="gpu")
    f.fence("sc", "gpu")


def _park_while(f: FnBuilder, ch, blocked, waiter: int) -> None:
    """While ``blocked()`` (a fresh load each call): park as the ``waiter``, check again (the
    other side may have moved between the first check and the park), and return Pending if
    still blocked. The Dekker pattern of both sides: store waiter, fence.sc, re-check."""
    with f.if_(blocked()):
        _park(f, ch, waiter)
        with f.when(blocked()):
            f.pending()


def _slot(f: FnBuilder, ch, index, cap: int):
    """Address of ring slot ``index mod cap`` (cap a power of two)."""
    return f.add(_at(f, ch, SLOTS), f.mul(f.and_(index, cap - 1, type=U32), 4, mode="wide"),
                 type=U64)


def _send_body(cap: int):
    def body(f: FnBuilder):
        f.new_state()  # every poll, the first included, starts here
        ch = f.arg("ch")
        tail = f.ld("global", _at(f, ch, TAIL), U32, sem="relaxed", scope="gpu")

        def full():
            head = f.ld("global", ch, U32, sem="acquire", scope="gpu")
            return f.setp("ge", f.sub(tail, head), cap, type=U32)

        _park_while(f, ch, full, SEND_WAITER)
        f.st("global", _slot(f, ch, tail, cap), f.arg("value"), type=U32)
        f.st("global", _at(f, ch, TAIL), f.add(tail, 1), sem="release", scope="gpu")
        f.fence("sc", "gpu")
        _wake_waiter(f, ch, RECV_WAITER)
        f.ready()

    return body


def _recv_body(cap: int):
    def body(f: FnBuilder):
        f.new_state()
        ch = f.arg("ch")
        head = f.ld("global", ch, U32, sem="relaxed", scope="gpu")

        def empty():
            tail = f.ld("global", _at(f, ch, TAIL), U32, sem="acquire", scope="gpu")
            return f.setp("eq", tail, head)

        _park_while(f, ch, empty, RECV_WAITER)
        value = f.ld("global", _slot(f, ch, head, cap), U32)
        f.st("global", ch, f.add(head, 1), sem="release", scope="gpu")
        f.fence("sc", "gpu")
        _wake_waiter(f, ch, SEND_WAITER)
        f.ready(value)

    return body


_FUTS: dict = {}


def _futures(cap: int):
    if cap < 1 or cap & (cap - 1):
        raise FutureBuildError(f"channel capacity must be a power of two, not {cap}")
    if cap not in _FUTS:
        _FUTS[cap] = (LeafFuture(f"chan{cap}_send", [("ch", U64), ("value", U32)], None,
                                 _send_body(cap)),
                      LeafFuture(f"chan{cap}_recv", [("ch", U64)], U32, _recv_body(cap)))
    return _FUTS[cap]


def send(ch, value, cap: int = 1) -> FutureCall:
    """``tx.send(value).await``: Ready once ``value`` is in the ring (parks while it is full)."""
    return _futures(cap)[0](ch, value)


def recv(ch, cap: int = 1) -> FutureCall:
    """``rx.recv().await``: Ready with the next u32 (parks while the ring is empty)."""
    return _futures(cap)[1](ch)


__all__ = ["channel_bytes", "send", "recv", "HEAD", "TAIL", "RECV_WAITER", "SEND_WAITER",
           "SLOTS"]
