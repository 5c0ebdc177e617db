"""``block_on``: each task is polled by its own thread until Ready; wake is a no-op.

The floor cost of a future with no scheduler. The worker granularity sets the scope of the
run loop: ``thread`` (each thread loops until its task is Ready), ``warp`` (the warp loops
until every lane's task is Ready, ``vote.sync.all``), ``block`` (the block loops until every
task in it is Ready, ``barrier.red.and``) -- the same polls, different synchronisation.

A task never leaves its thread, so with ``inline`` dispatch its frame is registers
(``RegisterTask``: the poll body is written into the loop, as rustc + LLVM make a pinned
local future of an inlined ``block_on``). ``direct``/``indirect`` poll through the ABI:
the first poll is ``start_<root>`` with the arguments in registers, the later ones
``poll_<root>`` on the task's frame record in global memory.
"""

from __future__ import annotations

from executors.base import (
    HEADER_ROWS, KERNEL_PARAMS, Executor, ExecutorBuild, ExecutorKernel, Probe, StopPoller,
    define_noop_wake, dispatch_poll, first_poll, worker_all, worker_any,
)
from harness.futures import READY, ROW_BYTES, RegisterTask, record_addr
from harness.ptx import Builder
from harness.ptx.types import PRED, U32, U64


class BlockOn(Executor):
    name = "block_on"
    granularities = ("thread", "warp", "block")
    dispatch_modes = ("inline", "direct", "indirect")
    polls_block_together = True  # the block loops until all its tasks are Ready, together
    wake_is_noop = True
    summary = "each worker polls one root future until Ready; wake is a no-op"

    def emit_module(self, build: ExecutorBuild) -> None:
        """Only a ``wake`` that does nothing; poll functions come with the kernels that
        call them (``inline`` has none)."""
        define_noop_wake(build.module)

    def emit_kernel(self, build: ExecutorBuild, dispatch: str, granularity: str,
                    instrument: bool) -> ExecutorKernel:
        """A worker a task: thread ``i`` of the grid polls root ``i``."""
        b, probe, rows = self.kernel_entry(build, dispatch, granularity, instrument)
        ntasks = b.param("ntasks")
        gid = b.global_index()
        valid = b.setp("lt", gid, ntasks)
        if granularity == "thread":
            with b.if_(valid, negate=True):
                b.exit()
        self.poll_to_ready(b, build, dispatch, granularity, probe, StopPoller(b, granularity),
                           gid, valid, b.param("frames"), rows)
        return self.kernel_exit(b, probe, dispatch, rows, build)

    def kernel_entry(self, build: ExecutorBuild, dispatch: str, granularity: str,
                     instrument: bool) -> tuple:
        """The kernel's entry, its probe, and the rows of a task record (0: inline, the
        frame is registers); the root's poll functions where it is polled through the ABI."""
        name = self.kernel_name(granularity, dispatch, build.root, instrument)
        b = Builder.entry(build.module, name, KERNEL_PARAMS)
        rows = 0
        if dispatch != "inline":
            build.root.emit(build.module, build.space)
            rows = HEADER_ROWS + build.root.rows
        return b, Probe(b, instrument), rows

    def kernel_exit(self, b: Builder, probe: Probe, dispatch: str, rows: int,
                    build: ExecutorBuild, state_bytes: int = 0) -> ExecutorKernel:
        """Store the probe's counts, return, and say how to launch the kernel."""
        probe.finish(b.param("counters"), b.global_index())
        b.ret()
        frame_bytes = 0 if dispatch == "inline" else build.root.frame_size
        return ExecutorKernel(b.fn.name, rows=rows, frame_bytes=frame_bytes,
                              state_bytes=state_bytes)

    def poll_to_ready(self, b: Builder, build: ExecutorBuild, dispatch: str, granularity: str,
                      probe: Probe, stopper: StopPoller, task, valid, records, rows: int):
        """``block_on`` over the worker: poll root ``task`` (where ``valid``) until it is
        Ready, the worker looping until all its tasks are, or until the host asks to stop.
        ``records``: the task records' base. Returns a predicate, worker-uniform: stopped."""
        root, args = build.root, b.param("args")
        frames, stop = b.param("frames"), b.param("stop")
        done = b.reg(U32)  # 1 once this thread's task is Ready (or it has none)
        b.selp(0, 1, valid, type=U32, dst=done)
        if dispatch == "inline":
            task_regs = RegisterTask(b, root, task, frames, [task, args])
            poll = task_regs.poll
        else:
            record = record_addr(b, records, task, rows)
            frame = b.add(record, HEADER_ROWS * ROW_BYTES, type=U64)
            with b.if_(valid):  # the first poll: arguments in registers
                probe.begin()
                status = first_poll(b, root, record, frame, task, frames, [task, args],
                                    dispatch)
                probe.poll_done(status)
                b.selp(1, 0, b.setp("eq", status, READY), type=U32, dst=done)

            def poll():
                return dispatch_poll(b, (root,), record, frame, task, frames, dispatch)
        stopped = b.reg(PRED)
        b.setp("ne", done, done, dst=stopped)  # false
        with b.loop() as loop:
            finished = b.setp("ne", done, 0)
            if granularity != "thread":
                probe.begin()  # a finished lane waiting for its warp/block is idle
            finished = worker_all(b, finished, granularity)
            if granularity != "thread":
                probe.end("idle_cycles")
            loop.break_if(finished)
            with b.if_(b.setp("eq", done, 0)):
                probe.begin()
                status = poll()
                probe.poll_done(status)
                b.selp(1, 0, b.setp("eq", status, READY), type=U32, dst=done)
            b.mov(worker_any(b, stopper.poll(b, stop), granularity), type=PRED, dst=stopped)
            loop.break_if(stopped)
        return stopped
