"""``block_on``: each task is polled by its own thread until Ready; wake is a no-op.

The floor cost of a future with no scheduler. The worker granularity sets the scope of the
run loop: ``thread`` (each thread loops until its task is Ready), ``warp`` (the warp loops
until every lane's task is Ready, ``vote.sync.all``), ``block`` (the block loops until every
task in it is Ready, ``bar.red.and``) -- the same polls, different synchronisation.
"""

from __future__ import annotations

from executors.base import (
    HEADER, KERNEL_PARAMS, Executor, ExecutorKernel, Probe, StopPoller, define_noop_wake,
    poll_root, spawn_root, worker_all, worker_any,
)
from harness.futures import READY, FutureDef
from harness.ptx import Builder, Module
from harness.ptx.types import U32, U64



class BlockOn(Executor):
    name = "block_on"
    granularities = ("thread", "warp", "block")
    dispatch_modes = ("inline", "direct", "indirect")
    summary = "each worker polls one root future until Ready; wake is a no-op"

    def build(self, module: Module, root: FutureDef, dispatch: str = "direct",
              granularity: str = "thread", instrument: bool = False,
              tasks: tuple = (), spawn_capacity: int = 0) -> ExecutorKernel:
        self.check(dispatch, granularity)
        define_noop_wake(module)
        root.emit(module)
        stride = HEADER + root.frame_size
        name = f"block_on_{granularity}_{dispatch}_{root.name}" + ("_instr" if instrument else "")
        b = Builder.entry(module, name, KERNEL_PARAMS)
        gid = b.global_index()
        probe = Probe(b, instrument)
        frames, ntasks = b.param("frames"), b.param("ntasks")
        args, stop = b.param("args"), b.param("stop")
        valid = b.setp("lt", gid, ntasks)
        if granularity == "thread":
            with b.if_(valid, negate=True):
                b.exit()
        header = b.add(frames, b.mul(gid, stride, mode="wide"), type=U64)
        frame = b.reg(U64)
        with b.if_(valid):
            spawn_root(b, root, header, gid, args, dispatch)
        b.add(header, HEADER, type=U64, dst=frame)
        done = b.reg(U32)  # 1 once this thread's task is Ready (or it has none)
        b.selp(0, 1, valid, type=U32, dst=done)
        stopper = StopPoller(b)
        with b.loop() as loop:
            with b.if_(b.setp("eq", done, 0)):
                probe.begin()
                status = poll_root(b, root, header, frame, gid, header, dispatch)
                probe.poll_done(status)
                b.selp(1, 0, b.setp("eq", status, READY), type=U32, dst=done)
            finished = b.setp("ne", done, 0)
            if granularity != "thread":
                probe.begin()  # a finished lane waiting for its warp/block is idle
            finished = worker_all(b, finished, granularity)
            if granularity != "thread":
                probe.end("idle_cycles")
            loop.break_if(finished)
            loop.break_if(worker_any(b, stopper.poll(b, stop), granularity))
        probe.finish(b.param("counters"), gid)
        b.ret()
        return ExecutorKernel(name, stride, root.frame_size)
