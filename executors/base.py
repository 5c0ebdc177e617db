"""The executor contract (DESIGN §5): emit a kernel's run loop and the ``wake`` function
for a spawn list, in one of two dispatch modes and at one worker granularity.

Every executor kernel has the same parameters, so the host side is shared:
``(frames: u64, ntasks: u32, args: u64, stop: u64)``. Task ``i``'s header starts at
``frames + i * stride``: ``[poll_fn: u64][reserved: u64]`` then the root future's frame.
``stop`` points at a u32 the host sets to ask the kernel to give up (the watchdog).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import PollbenchError
from harness.futures import FutureDef
from harness.ptx import Builder, Module
from harness.ptx.types import U32, U64

HEADER = 16
KERNEL_PARAMS = (("frames", U64), ("ntasks", U32), ("args", U64), ("stop", U64))
DISPATCH_MODES = ("direct", "indirect")


@dataclass
class ExecutorKernel:
    """What the host needs to launch an executor's kernel."""

    name: str
    stride: int  # bytes per task: header + root frame
    frame_bytes: int


class Executor:
    """Base class; subclasses set ``name``/``granularities`` and implement ``build``."""

    name = "abstract"
    granularities: tuple = ("thread",)
    summary = ""

    def check(self, dispatch: str, granularity: str) -> None:
        if dispatch not in DISPATCH_MODES:
            raise PollbenchError(f"unknown dispatch mode {dispatch!r} "
                                 f"({' or '.join(DISPATCH_MODES)})")
        if granularity not in self.granularities:
            raise PollbenchError(f"{self.name} has no worker granularity {granularity!r} "
                                 f"(it has {', '.join(self.granularities)})")

    def build(self, module: Module, root: FutureDef, dispatch: str = "direct",
              granularity: str = "thread") -> ExecutorKernel:
        raise NotImplementedError


def spawn_root(b: Builder, root: FutureDef, header, task, args, dispatch: str):
    """Spawn one root task: write its header's poll_fn (indirect mode), its arguments
    ``(task, args)`` and resume = 0. Returns the frame address."""
    from harness.ptx import Sym

    frame = b.add(header, HEADER, type=U64)
    if dispatch == "indirect":
        b.st("global", header, b.mov(Sym(root.poll_name)), type=U64)
    b.st("global", b.add(frame, root.arg_offset("task"), type=U64), task, type=U32)
    b.st("global", b.add(frame, root.arg_offset("args"), type=U64), args, type=U64)
    b.st("global", frame, b.mov(0, type=U32))
    return frame


def poll_root(b: Builder, root: FutureDef, header, frame, task, exec_, dispatch: str):
    """Poll a root task: a direct call (monomorphised, inlinable by ptxas) or an indirect
    call through the header's poll_fn (Embassy's type-erased ``poll_fn``)."""
    if dispatch == "direct":
        return b.call(root.poll_name, [frame, task, exec_])
    fptr = b.ld("global", header, U64)
    return b.call(fptr, [frame, task, exec_], proto=b.module.functions[root.poll_name])


def define_noop_wake(module: Module) -> None:
    """``wake(task, exec)`` that does nothing (block_on re-polls anyway)."""
    if "wake" in module.functions:
        return
    w = Builder.func(module, "wake", [("task", U32), ("exec", U64)])
    w.ret()
