"""The async model: futures, frames, the poll ABI and the async-fn DSL (DESIGN §4)."""

from harness.futures.core import (
    PENDING, READY, FnBuilder, FutureBuildError, FutureCall, FutureDef, build_poll,
)
from harness.futures.lib import (
    AsyncFn, LeafFuture, async_fn, map_, ready, sleep, then, wait_flag, yield_now,
)

__all__ = ["PENDING", "READY", "FnBuilder", "FutureBuildError", "FutureCall", "FutureDef",
           "build_poll", "AsyncFn", "LeafFuture", "async_fn", "map_", "ready", "sleep", "then",
           "wait_flag", "yield_now"]
