"""The async model: futures, frames, the poll ABI and the async-fn DSL (architecture §4)."""

from harness.futures.core import (
    FRAME_SPACES, LANES, PENDING, READY, ROW_BYTES, SPAWN_FAILED, FnBuilder, FutureBuildError,
    SPAWN_PARAMS, WAKE_PARAMS, FutureCall, FutureDef, RegisterTask, build_poll, declare_spawn,
    declare_wake, ld_row, record_addr, records_bytes, row_mem,
    st_row, write_task_args,
)
from harness.futures.lib import (
    AsyncFn, LeafFuture, async_fn, map_, ready, sleep, then, wait_flag, yield_now,
)

__all__ = ["FRAME_SPACES", "LANES", "PENDING", "READY", "ROW_BYTES", "SPAWN_FAILED", "FnBuilder",
           "FutureBuildError", "FutureCall", "FutureDef", "RegisterTask", "SPAWN_PARAMS",
           "WAKE_PARAMS", "build_poll", "declare_spawn", "declare_wake",
           "ld_row", "record_addr", "records_bytes", "row_mem",
           "st_row", "write_task_args", "AsyncFn", "LeafFuture",
           "async_fn", "map_", "ready", "sleep", "then", "wait_flag", "yield_now"]
