"""``graph``: the hardware graph engine as the scheduler (architecture §5, §11).

A host-built CUDA graph holds one WHILE conditional node whose body is one kernel node, the
*round*: every worker (a thread) swaps its run-queue head to null and polls that batch once
(Embassy's ``dequeue_all``, the same queues, wake and spawn as ``embassy``), then leaves. The
first round also spawns the roots (a per-worker ``started`` flag). The WHILE node repeats
rounds until the round in which the last task becomes Ready: each block adds the tasks that
became Ready in it to ``finished`` (one ``atom.add`` per block), and the block whose add makes
``finished == ntasks + spawned`` calls ``cudaGraphSetConditional(handle, 0)`` from PTX; the
handle is a plain u64 kernel argument.
Thread 0 also ends the loop when the host raises the stop flag (the watchdog).

Why "finished == ntasks + spawned" is exact: every spawn's ``pool_next`` increment happens
before its child can finish, and ``finished`` is read (by the atom) before ``pool_next``, so
the equality can only hold when no task is alive to spawn more.

The backend drives the rounds (``Backend.launch_rounds``): a cached WHILE graph on a GPU; on
the emulator the same round kernel in a host loop, the extern answered by a hook
(``Emulator.externs``), under one step budget for the whole loop.
"""

from __future__ import annotations

from executors.base import Probe
from executors.runqueue import (
    FINISHED, KERNEL_PARAMS, POOL_NEXT, STARTED, RunQueueExecutor, finish_counters, record,
    run_batch, start_roots, stop_requested,
)
from harness.futures import row_mem
from harness.ptx import Builder
from harness.ptx.types import B32, B64, U32, U64

ROUND_PARAMS = KERNEL_PARAMS + (("handle", U64),)


class Graph(RunQueueExecutor):
    name = "graph"
    summary = ("CUDA graph: a WHILE node repeats a round kernel that polls each worker's "
               "ready batch once; the block that counts the last Ready calls "
               "cudaGraphSetConditional from PTX")

    def emit_loop(self, build, name, dispatch, instrument, granularity="thread") -> None:
        module, types, rows = build.module, build.types, build.layout
        if "cudaGraphSetConditional" not in module.functions:
            # .b64/.b32: the declaration the H100 self-test verified (harness/gpu/selftest.py)
            Builder.extern(module, "cudaGraphSetConditional", [("handle", B64), ("value", B32)])
        b = Builder.entry(module, name, ROUND_PARAMS)
        probe = Probe(b, instrument)
        r = self.prologue(b, instrument, spawns=build.spawn_capacity > 0)
        gid, base, ntasks = r["gid"], r["base"], r["ntasks"]
        handle = b.param("handle")
        # Tasks that became Ready in this round, counted per thread, then per block: one
        # global atomic per block, not one per task (2^20 Ready roots on one address
        # would serialise at the L2).
        finished = b.mov(0, type=U32)
        count = Builder.shared(module, f"{name}_finished", 4, 4)

        def on_ready():
            b.add(finished, 1, dst=finished)

        with b.if_(b.setp("lt", gid, ntasks)):
            rec = record(b, base, gid, rows)
            started = row_mem(rec, STARTED)
            with b.if_(b.setp("eq", b.ld("global", started, U32), 0)):
                b.st("global", started, b.mov(1, type=U32))
                start_roots(b, base, types, gid, r["nworkers"], ntasks, r["args"], rows,
                            r["exec"], dispatch, probe, on_ready, live=None)
            run_batch(b, base, rec, types, r["exec"], rows, dispatch, probe, on_ready,
                      live=None)
        # The block's count: thread 0 zeroes it, every thread adds its own, thread 0 adds the
        # block's to ``finished`` (bar.sync orders the shared accesses). The add that makes
        # finished == ntasks + spawned ends the loop.
        first = b.setp("eq", b.special("tid.x"), 0)
        with b.if_(first):
            b.st("shared", count, b.mov(0, type=U32))
        b.bar_sync(0)
        with b.if_(b.setp("ne", finished, 0)):
            b.red("shared", "add", count, finished, type=U32)
        b.bar_sync(0)
        with b.if_(first):
            total = b.ld("shared", count, U32)
            with b.if_(b.setp("ne", total, 0)):
                done = b.add(b.atom("global", "add", b.add(base, FINISHED, type=U64), total,
                                    type=U32, sem="acq_rel", scope="gpu"), total)
                spawned = b.ld("global", b.add(base, POOL_NEXT, type=U64), U32, sem="acquire",
                               scope="gpu")
                # failed spawns count past the capacity
                spawned = b.min(spawned, build.spawn_capacity, type=U32)
                with b.if_(b.setp("eq", done, b.add(ntasks, spawned))):
                    b.call("cudaGraphSetConditional", [handle, b.mov(0, type=U32)])
        with b.if_(b.setp("eq", gid, 0)):
            with b.if_(stop_requested(b, r["stop"])):
                b.call("cudaGraphSetConditional", [handle, b.mov(0, type=U32)])
        finish_counters(b, probe, r["counters"], gid)
        b.ret()

    # ------------------------------------------------------------------ host side

    def launch(self, backend, kernel, grid, block, run, checked: bool = False):
        """``prepare``, then rounds until the kernel ends the loop (the backend's
        ``launch_rounds``: a WHILE graph on a GPU, a host loop on the emulator)."""
        self.prepare(backend, kernel, grid, block, run)
        return backend.launch_rounds(kernel.name, grid, block, run.params(), checked=checked)

    def zeroed_rows(self, spawns: bool) -> int:
        """State, head and the per-worker ``started`` flag (``live`` is not counted)."""
        return STARTED + 1

    def graph_safe(self, kernel) -> bool:
        """No: a run is a launch of the WHILE graph, which cannot be captured into a batch
        graph (a conditional node's graph is not a child graph); each sample is one run
        launched from Python, so a short run is bounded by the host, not the GPU."""
        return False

    def enqueue(self, backend, kernel, grid, block, run) -> None:
        """The timed form: zero the pool and queue the rounds, without waiting."""
        self.prepare(backend, kernel, grid, block, run)
        backend.enqueue_rounds(kernel.name, grid, block, run.params())
