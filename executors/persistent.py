"""``persistent``: ``block_on`` on persistent workers that claim their roots.

The grid is as many blocks as fit on the device at once (``Backend.resident_blocks``), not a
worker per task. Each worker claims the next roots from a counter in the executor's state
(one ``atom.add``: a thread claims one root, a warp one per lane, a block one per thread),
polls them until Ready as ``block_on`` does, then claims again, until the counter passes the
root count. What it answers: a worker that takes tasks as it frees up (dynamic scheduling:
``irregular``'s heavy tail), and a block that walks output tiles one after another
(``matmul``: persistent tile workers, the tile's shared memory reused tile after tile).
What it costs over ``block_on``: one atomic per claim (per warp, per block), and a worker's
loop around the run loop.

A root is polled to Ready before its worker claims again, so a root must not wait for one
that is claimed later than the next claim (a deadlock the watchdog would end): every
workload's roots wait at most for roots of their own claim or the one after it
(``ping_pong``'s pairs are adjacent ids; an ``idle_wait`` group's setter comes before its
waiters, in one block).
"""

from __future__ import annotations

from executors.base import ExecutorBuild, ExecutorKernel, StopPoller
from executors.block_on import BlockOn
from harness.ptx import Builder
from harness.ptx.types import U32, U64

STATE_BYTES = 16  # the claim counter (u32), then padding: task records stay 16-byte aligned


class RootClaim:
    """The next roots of a worker, from the u32 counter at ``frames`` (zeroed before every
    run). ``first()`` is the worker's first claimed root (worker-uniform), ``rank`` this
    thread's place in the claim: its root is ``first + rank``."""

    def __init__(self, b: Builder, granularity: str):
        self.b, self.granularity = b, granularity
        if granularity == "thread":
            self.rank, self.size = b.mov(0, type=U32), 1
        elif granularity == "warp":  # lanes 0..k-1 are present, k < 32 in a partial warp
            self.rank, self.size = b.special("laneid"), b.popc(b.activemask(), type=U32)
        else:
            self.rank, self.size = b.special("tid.x"), b.special("ntid.x")
            self.slot = Builder.shared(b.module, f"{b.fn.name}_claim", 4, align=4)

    def first(self):
        b, counter = self.b, self.b.param("frames")
        if self.granularity == "thread":
            return b.atom("global", "add", counter, b.mov(1, type=U32), type=U32)
        first = b.mov(0, type=U32)  # the other lanes' value, never used
        with b.if_(b.setp("eq", self.rank, 0, type=U32)):
            b.atom("global", "add", counter, self.size, type=U32, dst=first)
            if self.granularity == "block":
                b.st("shared", b.mov(self.slot, type=U32), first, type=U32)
        if self.granularity == "warp":
            return b.shfl("idx", first, 0)
        # Thread 0's store is read after this barrier; its next store comes after the
        # run loop's closing barrier.red, which every thread reaches after its read here.
        b.bar_sync(0, aligned=False)
        return b.ld("shared", b.mov(self.slot, type=U32), U32)


class Persistent(BlockOn):
    name = "persistent"
    summary = ("block_on on persistent workers (a grid that fits at once): each worker "
               "claims its next roots from a counter (atom.add) and polls them to Ready")

    def emit_kernel(self, build: ExecutorBuild, dispatch: str, granularity: str,
                    instrument: bool) -> ExecutorKernel:
        b, probe, rows = self.kernel_entry(build, dispatch, granularity, instrument)
        ntasks = b.param("ntasks")
        records = b.add(b.param("frames"), STATE_BYTES, type=U64)
        claim, stopper = RootClaim(b, granularity), StopPoller(b, granularity)
        with b.loop() as worker:
            first = claim.first()
            worker.break_if(b.setp("ge", first, ntasks, type=U32))  # worker-uniform
            task = b.add(first, claim.rank, type=U32)
            stopped = self.poll_to_ready(b, build, dispatch, granularity, probe, stopper,
                                         task, b.setp("lt", task, ntasks, type=U32), records,
                                         rows)
            worker.break_if(stopped)
        return self.kernel_exit(b, probe, dispatch, rows, build, state_bytes=STATE_BYTES)

    def grid(self, backend, kernel: ExecutorKernel, ntasks: int, block: int) -> int:
        """As many blocks as fit at once (fewer when the roots need fewer)."""
        need = super().grid(backend, kernel, ntasks, block)
        return max(1, min(need, backend.resident_blocks(kernel.name, block,
                                                        kernel.dynamic_smem)))
