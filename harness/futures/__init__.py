"""The async model: futures, frames, the poll ABI and the async-fn DSL (DESIGN §4)."""

from harness.futures.core import (
    FRAME_SPACES, PENDING, READY, SPAWN_FAILED, FnBuilder, FutureBuildError, FutureCall, FutureDef,
    build_poll, frame_space, set_frame_space,
)
from harness.futures.lib import (
    AsyncFn, LeafFuture, async_fn, map_, ready, sleep, then, wait_flag, yield_now,
)

__all__ = ["FRAME_SPACES", "PENDING", "READY", "SPAWN_FAILED", "FnBuilder", "FutureBuildError", "FutureCall",
           "FutureDef", "build_poll", "frame_space", "set_frame_space", "AsyncFn", "LeafFuture",
           "async_fn", "map_", "ready", "sleep", "then", "wait_flag", "yield_now"]
