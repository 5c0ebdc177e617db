"""Helpers for the executor conformance suite: run a hand-written root future under any
registered executor, on either backend, and read back what it recorded.

A *probe* root takes ``(task, args)`` like every root; ``args`` points at a table of u32
rows the probe counts into (``table[row * n + task]``), with ``n`` in the table's first
word. ``run_root`` builds the executor's kernel for the probe, zeroes the table, launches
once through ``Executor.launch`` (checked: a hang is an error) and returns the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from executors import EXECUTORS, get_executor
from executors.base import LaunchArgs
from harness.futures import FnBuilder
from harness.futures.lib import AsyncFn, LeafFuture
from harness.ptx import Module
from harness.ptx.types import U32, U64

ROW0 = 16  # bytes before row 0 of a probe table: n (u32), then padding


def executor_names() -> list:
    """Every registered executor: new ones join the suite by registering."""
    return list(EXECUTORS)


def probe_root(name: str, body) -> AsyncFn:
    return AsyncFn(name, [("task", U32), ("args", U64)], None, body)


def probe_leaf(name: str, lower) -> LeafFuture:
    """A root written state by state (``lower(f)`` writes the whole poll body)."""
    return LeafFuture(name, [("task", U32), ("args", U64)], None, lower)


def row_addr(f: FnBuilder, row: int, task=None):
    """Address of ``table[row][task]`` (u32) in a probe's table."""
    table = f.arg("args")
    n = f.ld("global", table, U32)
    task = task if task is not None else f.arg("task")
    idx = f.mad(f.mov(row, type=U32), n, task)
    return f.element_addr(f.add(table, ROW0, type=U64), idx, 4)


def bump(f: FnBuilder, row: int, task=None, value=1) -> None:
    """``table[row][task] += value`` (atomic: any worker may run the task)."""
    f.red("global", "add", row_addr(f, row, task),
          f.mov(value, type=U32) if isinstance(value, int) else value, sem="relaxed", scope="gpu")


@dataclass
class RootRun:
    rows: np.ndarray  # u32[rows, n]
    kernel: object
    error: int  # the executor's error word (0: none)
    launch: object


def default_geometry(executor: str, n: int, block: int = 32):
    """One thread per task (what run_case does), ``block`` threads per block."""
    return -(-n // block), block


def run_root(executor: str, root, n: int, backend, rows: int, init: dict | None = None,
             tasks: tuple = (), spawn_capacity: int = 0, granularity: str = "thread",
             dispatch: str = "direct", geometry=None, instrument: bool = False) -> RootRun:
    """Run ``root`` as ``n`` tasks under ``executor`` on ``backend``; returns its table.

    ``init`` maps row index -> u32[n] initial values (e.g. per-task parameters); other
    rows start at zero. ``geometry`` is (grid, block); default one thread per task.
    """
    ex = get_executor(executor)
    m = Module(arch=getattr(backend, "arch", "sm_90"))
    kernel = ex.build(m, root, dispatch, granularity, instrument=instrument, tasks=tasks,
                      spawn_capacity=spawn_capacity)
    backend.load(m)
    table = np.zeros(ROW0 // 4 + rows * n, np.uint32)
    table[0] = n
    for r, values in (init or {}).items():
        table[ROW0 // 4 + r * n: ROW0 // 4 + (r + 1) * n] = values
    args = backend.to_device(table)
    run = LaunchArgs.allocate(backend, kernel, n, args)
    frames = run.frames
    grid, block = geometry or default_geometry(executor, n)
    launch = ex.launch(backend, kernel, grid, block, run, checked=True)
    out = backend.read(args, np.uint32, table.size)[ROW0 // 4:].reshape(rows, n)
    error = 0
    if kernel.error_offset is not None:
        error = int(backend.read(frames + kernel.error_offset, np.uint32, 1)[0])
    return RootRun(out, kernel, error, launch)


def poll_gap_bound(executor: str, kernel) -> int | None:
    """The executor's stated bound: a class attribute, or a method of the built kernel
    (when it depends on the build, e.g. a capacity). None: the executor has no shared
    worker (each task has its own), so there is nothing to starve."""
    bound = getattr(get_executor(executor), "poll_gap_bound", None)
    if callable(bound):
        return int(bound(kernel))
    return bound


__all__ = ["executor_names", "probe_root", "probe_leaf", "row_addr", "bump", "run_root",
           "RootRun", "poll_gap_bound", "default_geometry", "ROW0"]
