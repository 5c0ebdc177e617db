"""Wake-to-poll latency measured on the device, shared by the workloads that wake tasks.

A stats buffer of u64 rows (structure of arrays, one column per task): ``SUM``, ``COUNT``,
``MAX`` of the latencies a task saw, and ``STAMP``, the ``%globaltimer`` its waker wrote just
before publishing what the task waits for. The woken task's poll that takes it reads the
timer again and accumulates the difference: the waker's publish, its ``wake``, the worker
finding the task, the poll itself. The buffer accumulates over every run of a case.
"""

from __future__ import annotations

import numpy as np

from harness.ptx.types import U32, U64

SUM, COUNT, MAX, STAMP = range(4)  # rows of the stats buffer
ROWS = 4


def stat_addr(wl, f, row: int, task):
    """Address of ``row`` of ``task``'s column (``wl`` has a ``stats`` input)."""
    n = f.cvt(wl.input_ptr(f, f.arg("args"), len(wl.input_names) + 1), U32)
    base = wl.input_ptr(f, f.arg("args"), wl.input_names.index("stats"))
    return f.element_addr(base, f.mad(f.mov(row, type=U32), n, task), 8)


def stamp(wl, f, task) -> None:
    """Write now into ``task``'s STAMP: call right before publishing what it waits for."""
    f.st("global", stat_addr(wl, f, STAMP, task), f.special("globaltimer"), type=U64)


def record(wl, f) -> None:
    """Accumulate now - this task's STAMP (call in the poll that took what it waited for)."""
    me = f.arg("task")
    lat = f.sub(f.special("globaltimer"), f.ld("global", stat_addr(wl, f, STAMP, me), U64),
                type=U64)
    for row, new in ((SUM, lambda old: f.add(old, lat, type=U64)),
                     (COUNT, lambda old: f.add(old, 1, type=U64)),
                     (MAX, lambda old: f.max(old, lat, type=U64))):
        addr = stat_addr(wl, f, row, me)
        f.st("global", addr, new(f.ld("global", addr, U64)), type=U64)


def zeros(n: int) -> np.ndarray:
    """A fresh stats buffer for ``n`` tasks."""
    return np.zeros(ROWS * n, np.uint64)


def summary(backend, wl, args_ptr: int, n: int) -> dict:
    """Mean and max wake-to-poll latency (ns; on the emulator, emulated steps) and how many
    latencies they cover, from the buffer the case's runs filled; {} when none."""
    s = backend.read(wl.input_buffer(backend, args_ptr, "stats"), np.uint64, ROWS * n).reshape(ROWS, n)
    count = int(s[COUNT].sum())
    if not count:
        return {}
    return {"wake_to_poll_ns_mean": float(s[SUM].sum() / count),
            "wake_to_poll_ns_max": int(s[MAX].max()), "latency_samples": count}
