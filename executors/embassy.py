"""``embassy``: Embassy's raw executor ported as is (architecture §5), one executor per worker.

Each worker (a thread) spawns its roots onto its own run queue, then loops: swap the head to
null and poll the detached batch (``SyncExecutor::poll``); tasks woken meanwhile go to the
next batch. An empty swap is Embassy's "nothing to do": on a microcontroller the core would
``wfe`` until the pender fires; a GPU thread has no pender, so it spins on the swap
(``backoff`` sleeps instead). The worker leaves when its queue is empty and none of the tasks
it homes is alive, or when the host raises the stop flag.
"""

from __future__ import annotations

from executors.base import Probe, worker_all, worker_any
from executors.runqueue import (
    KERNEL_PARAMS, RunQueueExecutor, StopPoller, finish_counters, live_tasks, record, run_batch,
    start_roots,
)
from harness.ptx import Builder
from harness.ptx.types import B32, PRED, U32


class Embassy(RunQueueExecutor):
    name = "embassy"
    granularities = ("thread", "warp", "block")
    summary = ("Embassy's raw executor: SPAWNED/RUN_QUEUED header bits, fetch_or + Treiber "
               "push, swap-to-null batch dequeue; one run queue per thread; idle workers spin")
    # A block worker's threads swap their own queues and poll their batches in one loop,
    # in lockstep: with one root a thread (run_case's layout) and no spawns, the tasks of a
    # cooperative tile suspend together (their leaf agrees over the block), each wakes
    # itself onto its own queue, and the next iteration polls all of them again together.
    polls_block_together = True

    def idle_setup(self, b: Builder):
        """Registers the idle policy keeps across iterations (none: Embassy spins)."""
        return None

    def on_idle(self, b: Builder, state) -> None:
        """An empty swap: spin straight back (a GPU has no ``wfe``/pender)."""

    def on_busy(self, b: Builder, state) -> None:
        """A non-empty batch was polled."""

    def emit_loop(self, build, name, dispatch, instrument, granularity="thread") -> None:
        types, rows = build.types, build.layout
        b = Builder.entry(build.module, name, KERNEL_PARAMS)
        probe = Probe(b, instrument)
        spawns = build.spawn_capacity > 0
        r = self.prologue(b, instrument, spawns=spawns)
        gid, base = r["gid"], r["base"]
        # Workers without roots (gid >= ntasks) have no queue: nothing is ever homed there.
        has_roots = b.setp("lt", gid, r["ntasks"])
        if granularity == "thread":
            with b.if_(has_roots, negate=True):
                b.exit()
        rec = record(b, base, gid, rows)
        # Tasks alive here: a register unless spawn (a .func) counts in the worker's row.
        live = "memory" if spawns else b.mov(0, type=U32)
        with b.if_(has_roots):
            start_roots(b, base, types, gid, r["nworkers"], r["ntasks"], r["args"], rows,
                        r["exec"], dispatch, probe, live=live)
        idle = self.idle_setup(b)
        stopper = StopPoller(b, granularity)
        done = b.reg(PRED)
        with b.loop() as lp:
            # Nothing alive here: done (the queue can only hold despawned tasks, which the
            # dequeue would skip). Else swap the queue; an empty swap is idle from here:
            # the swap itself is Embassy's spin (run_batch's polls restart the mark).
            b.not_(has_roots, dst=done)
            with b.if_(has_roots):
                b.setp("eq", live_tasks(b, rec) if spawns else live, 0, dst=done)
            with b.if_(done, negate=True):
                probe.begin()
                head = run_batch(b, base, rec, types, r["exec"], rows, dispatch, probe,
                                 live=live)
                empty = b.setp("eq", head, 0, type=B32)
                with b.if_(empty):
                    self.on_idle(b, idle)
                    probe.end("idle_cycles")
                with b.if_(empty, negate=True):
                    self.on_busy(b, idle)
            # The worker's scope: a thread leaves alone; a warp (vote.sync) or a block
            # (barrier.red) leaves when every lane's tasks are done, as block_on's do.
            lp.break_if(worker_all(b, done, granularity))
            lp.break_if(worker_any(b, stopper.poll(b, r["stop"]), granularity))
        finish_counters(b, probe, r["counters"], gid)
        b.ret()
