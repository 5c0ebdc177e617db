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
from harness.ptx.types import U32, U64


class BlockOn(Executor):
    name = "block_on"
    granularities = ("thread", "warp", "block")
    dispatch_modes = ("inline", "direct", "indirect")
    polls_block_together = True  # the block loops until all its tasks are Ready, together
    summary = "each worker polls one root future until Ready; wake is a no-op"

    def emit_module(self, build: ExecutorBuild) -> None:
        """Only a ``wake`` that does nothing; poll functions come with the kernels that
        call them (``inline`` has none)."""
        define_noop_wake(build.module)

    def emit_kernel(self, build: ExecutorBuild, dispatch: str, granularity: str,
                    instrument: bool) -> ExecutorKernel:
        module, root = build.module, build.root
        name = self.kernel_name(granularity, dispatch, root, instrument)
        b = Builder.entry(module, name, KERNEL_PARAMS)
        gid = b.global_index()
        probe = Probe(b, instrument)
        frames, ntasks = b.param("frames"), b.param("ntasks")
        args, stop = b.param("args"), b.param("stop")
        valid = b.setp("lt", gid, ntasks)
        if granularity == "thread":
            with b.if_(valid, negate=True):
                b.exit()
        done = b.reg(U32)  # 1 once this thread's task is Ready (or it has none)
        b.selp(0, 1, valid, type=U32, dst=done)
        if dispatch == "inline":
            task = RegisterTask(b, root, gid, frames, [gid, args])
            poll = task.poll
        else:
            root.emit(module, build.space)
            rows = HEADER_ROWS + root.rows
            record = record_addr(b, frames, gid, rows)
            frame = b.add(record, HEADER_ROWS * ROW_BYTES, type=U64)
            with b.if_(valid):  # the first poll: arguments in registers
                probe.begin()
                status = first_poll(b, root, record, frame, gid, frames, [gid, args], dispatch)
                probe.poll_done(status)
                b.selp(1, 0, b.setp("eq", status, READY), type=U32, dst=done)

            def poll():
                return dispatch_poll(b, (root,), record, frame, gid, frames, dispatch)
        stopper = StopPoller(b)
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
            loop.break_if(worker_any(b, stopper.poll(b, stop), granularity))
        probe.finish(b.param("counters"), gid)
        b.ret()
        if dispatch == "inline":
            return ExecutorKernel(name, rows=0, frame_bytes=0)
        return ExecutorKernel(name, rows=rows, frame_bytes=root.frame_size)
