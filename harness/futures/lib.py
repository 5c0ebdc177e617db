"""async fns, leaf futures and combinators, written in the DSL of ``harness.futures.core``.

    @async_fn(params=[("x", S32)], output=S32)
    def double(f, x):
        return f.mul(x, 2)

    @async_fn(params=[("a", S32), ("b", S32)], output=S32)
    def add_then_double(f, a, b):
        return f.await_(double(f.add(a, b)))
"""

from __future__ import annotations

from typing import Callable

from harness.futures.core import FnBuilder, FutureBuildError, FutureCall, FutureDef
from harness.ptx.types import S32, U32, U64, PtxType


class AsyncFn(FutureDef):
    """An ``async fn``: ``body(f, *args)`` returns the output register (or None)."""

    def __init__(self, name: str, params, output: PtxType | None, body: Callable):
        super().__init__(name, tuple(params), output)
        self.body = body

    def lower(self, f: FnBuilder) -> None:
        args = [f.arg(n) for n, _ in self.params]
        result = self.body(f, *args)
        if isinstance(result, FutureCall):  # `async fn f() { g().await }` tail
            result = f.await_(result)
        if (result is None) != (self.output is None):
            raise FutureBuildError(f"async fn {self.name} must return "
                                   f"{'a ' + self.output.name if self.output else 'nothing'}")
        f.ready(result)


class LeafFuture(FutureDef):
    """A hand-lowered future: ``lower(f)`` writes the whole poll body (states included)."""

    def __init__(self, name: str, params, output: PtxType | None, lower: Callable):
        super().__init__(name, tuple(params), output)
        self.lower = lower


def async_fn(params=(), output: PtxType | None = S32, name: str | None = None):
    """Decorator: turn a DSL body into an ``AsyncFn``."""

    def wrap(body):
        return AsyncFn(name or body.__name__, params, output, body)

    return wrap


# ------------------------------------------------------------------------ leaves

_READY: dict = {}


def ready(value, t: PtxType = S32) -> FutureCall:
    """``future::ready(v)``: Ready with ``v`` on the first poll."""
    if t.name not in _READY:
        _READY[t.name] = AsyncFn(f"ready_{t.name}", [("value", t)], t, lambda f, v: v)
    return _READY[t.name](value)


def _yield_body(f: FnBuilder):
    f.suspend()
    f.ready()


YIELD_NOW = LeafFuture("yield_now", [], None, _yield_body)


def yield_now() -> FutureCall:
    """Pending once (having woken itself), then Ready."""
    return YIELD_NOW()


def _sleep_body(f: FnBuilder):
    f.local("deadline", U64)
    now = f.special("globaltimer")
    f.set("deadline", f.add(now, f.cvt(f.arg("ns"), U64), type=U64))
    f.new_state()
    due = f.setp("hs", f.special("globaltimer"), f.get("deadline"), type=U64)
    with f.if_(due):
        f.ready()
    f.wake_self()  # no timer queue on a GPU: the future asks to be polled again
    f.pending()


SLEEP = LeafFuture("sleep", [("ns", U32)], None, _sleep_body)


def sleep(ns) -> FutureCall:
    """Ready once ``%globaltimer`` has passed now + ``ns``."""
    return SLEEP(ns)


def _wait_flag_body(f: FnBuilder):
    f.new_state()
    v = f.ld("global", f.arg("addr"), U32, sem="acquire", scope="gpu")
    with f.if_(f.setp("eq", v, f.arg("value"))):
        f.ready()
    f.wake_self()
    f.pending()


WAIT_FLAG = LeafFuture("wait_flag", [("addr", U64), ("value", U32)], None, _wait_flag_body)


def wait_flag(addr, value) -> FutureCall:
    """Ready once the u32 at ``addr`` (read with acquire, gpu scope) equals ``value``."""
    return WAIT_FLAG(addr, value)


# ------------------------------------------------------------------- combinators


def then(first: FutureDef, fn: Callable, output: PtxType | None, name: str) -> AsyncFn:
    """``first.then(|v| fn(v))``: ``fn(f, v)`` returns a future (awaited) or a value (map)."""

    def body(f, *args):
        v = f.await_(first(*args))
        r = fn(f, v)
        return f.await_(r) if isinstance(r, FutureCall) else r

    return AsyncFn(name, first.params, output, body)


def map_(first: FutureDef, fn: Callable, output: PtxType | None, name: str) -> AsyncFn:
    """``first.map(|v| fn(v))`` where ``fn(f, v)`` returns a register."""
    return then(first, fn, output, name)


__all__ = ["AsyncFn", "LeafFuture", "async_fn", "ready", "yield_now", "sleep", "wait_flag", "then", "map_"]
