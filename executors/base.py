"""The executor contract (architecture §5): emit a kernel's run loop and the ``wake`` function
for a spawn list, in one of two dispatch modes and at one worker granularity.

Every executor kernel has the same parameters, so the host side is shared:
``(frames: u64, ntasks: u32, args: u64, stop: u64, counters: u64)``. ``frames`` holds the
executor's state, then one *record* per task: header rows (the executor's), then the
task's frame rows, 32 neighbouring tasks interleaved row by row
(``harness.futures.record_addr``) so that a warp's accesses to one field coalesce.
``stop`` points at a u32 the host sets to ask the kernel to give up (the watchdog).
``counters`` is 0, or (instrumented builds) ``COUNTER_FIELDS`` u64s per thread (§8).

An executor whose host side is not "one launch" (the CUDA-graph executor) overrides
``Executor.launch``; everything else uses the backend's launch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness.errors import PollbenchError
from harness.futures import FutureDef, declare_wake
from harness.ptx import Builder, Module, Sym
from harness.ptx.types import U32, U64

KERNEL_PARAMS = (("frames", U64), ("ntasks", U32), ("args", U64), ("stop", U64),
                 ("counters", U64))
# How a run loop polls a root task: "inline" writes the root's poll body (and its
# children's, all the way down) into the kernel, as rustc monomorphises and inlines;
# "direct" is an ABI call of its .func (ptxas does not inline those); "indirect" calls
# through the task header's poll_fn pointer (Embassy's type-erased poll_fn).
DISPATCH_MODES = ("direct", "indirect", "inline")

# Per-thread counters of instrumented builds (architecture §8), one u64 each, in this order.
COUNTER_FIELDS = ("total_cycles", "poll_cycles", "polls", "pending_polls", "wakes",
                  "queue_ops", "cas_retries", "idle_cycles", "smid", "start_ns", "end_ns")
_STAMPS = ("smid", "start_ns", "end_ns")  # stored; every other field is a count (added)


@dataclass
class ExecutorKernel:
    """What the host needs to launch an executor's kernel.

    The ``frames`` buffer is ``state_bytes`` of executor state (zeroed by the host: run
    queues, pool counters, the error word) followed by ``capacity`` task records of
    ``rows`` u32 rows each, in groups of 32 interleaved tasks (poisoned, except the rows an
    executor zeroes). ``capacity`` is ``ntasks`` roots plus what the workload may spawn. A
    non-zero u32 at ``error_offset`` (inside the state) after a run is an executor error,
    e.g. ``ERROR_POOL_FULL``.
    """

    name: str
    rows: int  # u32 rows per task record: header + largest frame
    frame_bytes: int  # frame bytes per task (0: the frame is registers)
    state_bytes: int = 0
    capacity: int | None = None  # None: ntasks + spawn_capacity
    spawn_capacity: int = 0  # slots beyond the ntasks roots, for spawned tasks
    error_offset: int | None = None
    zeroed_rows: int = 0  # the first rows of every record, zeroed before each run
    dynamic_smem: int = 0  # dynamic shared memory per block, bytes, of every launch

    @property
    def stride(self) -> int:
        """Bytes per task record."""
        return 4 * self.rows

    def task_capacity(self, ntasks: int) -> int:
        return self.capacity if self.capacity is not None else ntasks + self.spawn_capacity

    def frames_bytes(self, ntasks: int) -> int:
        """Size of the ``frames`` buffer for a launch over ``ntasks`` roots."""
        from harness.futures import records_bytes

        return self.state_bytes + records_bytes(self.rows, self.task_capacity(ntasks))


@dataclass(frozen=True)
class LaunchArgs:
    """An executor kernel's parameters by name (``KERNEL_PARAMS``, in that order): the host
    side reads fields, never positions."""

    frames: int  # executor state, then the task records (``ExecutorKernel.frames_bytes``)
    ntasks: int  # roots
    args: int  # the workload's argument table
    stop: int  # the host's u32 stop flag
    counters: int = 0  # per-thread counters of instrumented builds, else 0

    @classmethod
    def allocate(cls, backend, kernel: ExecutorKernel, ntasks: int, args: int,
                 counters: int = 0) -> LaunchArgs:
        """A (poisoned) frames buffer of the size ``kernel`` needs for ``ntasks`` roots
        (the one place a task pool is sized), and the backend's stop flag."""
        return cls(backend.alloc(kernel.frames_bytes(ntasks)), ntasks, args,
                   backend.stop_ptr(), counters)

    def with_counters(self, counters: int) -> LaunchArgs:
        return replace(self, counters=counters)

    def params(self) -> list:
        """The kernel's parameter values, in order, typed for the launch."""
        return [self.frames, np.uint32(self.ntasks), self.args, self.stop, self.counters]


STOP_EVERY = 64  # run-loop iterations between looks at the clock for a stop check
# ns between a thread's reads of the host's stop flag. The flag is host-mapped memory: every
# read crosses PCIe, and ~10^5 resident threads reading it every few µs saturate the link
# and slow every wake (measured on the H100: wake-to-poll 30-100 µs with a per-64-iteration
# check). Every ~8 ms per thread is ~10^7 reads/s at most, and still stops well within the
# watchdog's grace.
STOP_INTERVAL_NS = 1 << 23

ERROR_POOL_FULL = 1
ERRORS = {ERROR_POOL_FULL: "task pool full"}


@dataclass
class ExecutorBuild:
    """One executor's code in one module, made per case by ``Executor.begin``: the task
    types (the root first, then every type a task may spawn), the spawn room, where frames
    live, and the module-wide layout the executor settled when it emitted ``wake`` and
    ``spawn`` (``layout``: record rows for run queues, the shared arrays for smem_ready).
    Every kernel of the case (plain, instrumented) is emitted through it, so the IR module
    carries no build state of its own."""

    executor: "Executor"
    module: Module
    types: tuple
    spawn_capacity: int = 0
    space: str = "global"  # the frames' state space (harness.futures FRAME_SPACES)
    layout: Any = None

    @property
    def root(self) -> FutureDef:
        return self.types[0]

    def emit_polls(self) -> None:
        """Every task type's ``poll_<name>``, frames in this build's space."""
        for t in self.types:
            t.emit(self.module, self.space)

    def kernel(self, dispatch: str = "direct", granularity: str = "thread",
               instrument: bool = False) -> ExecutorKernel:
        """Emit one kernel of this executor over the build's task types."""
        self.executor.check(dispatch, granularity)
        return self.executor.emit_kernel(self, dispatch, granularity, instrument)


class Executor:
    """Base class; subclasses set ``name``/``granularities``, emit their module-wide code
    in ``emit_module`` and each kernel in ``emit_kernel``."""

    name = "abstract"
    granularities: tuple = ("thread",)
    summary = ""
    supports_spawn = False  # has a run queue that tasks can spawn onto
    # at block granularity, every thread of a block polls its own task at the same time as
    # the others (one loop in lockstep): a cooperative workload's tile can run on it
    polls_block_together = False
    wake_is_noop = False  # wake does nothing (its worker re-polls anyway): no wakes counted
    dispatch_modes: tuple = ("direct", "indirect")  # what build() accepts
    frame_space = "global"  # where task frames live
    # racecheck follows barriers, not atomics: an executor whose shared-memory hand-offs are
    # ordered by atomics names the litmus test (conformance.litmus) that checks the ordering
    racecheck_ordered_by: str | None = None

    def check(self, dispatch: str, granularity: str) -> None:
        if dispatch not in self.dispatch_modes:
            raise PollbenchError(f"{self.name} has no dispatch mode {dispatch!r} "
                                 f"(it has {', '.join(self.dispatch_modes)})")
        if granularity not in self.granularities:
            raise PollbenchError(f"{self.name} has no worker granularity {granularity!r} "
                                 f"(it has {', '.join(self.granularities)})")

    def kernel_name(self, granularity: str, dispatch: str, root: FutureDef,
                    instrument: bool) -> str:
        return f"{self.name}_{granularity}_{dispatch}_{root.name}" + ("_instr" if instrument else "")

    def begin(self, module: Module, root: FutureDef, tasks: tuple = (),
              spawn_capacity: int = 0) -> ExecutorBuild:
        """This executor's module-wide code in ``module`` (``wake``, and ``spawn`` where
        supported): ``root`` is every initial task's future; ``tasks`` are the other future
        types that may be spawned (their frames size the task slots); ``spawn_capacity``
        the slots beyond the roots. One executor per module."""
        types = (root,) + tuple(t for t in tasks if t is not root)
        build = ExecutorBuild(self, module, types, spawn_capacity, self.frame_space)
        build.layout = self.emit_module(build)
        return build

    def build(self, module: Module, root: FutureDef, dispatch: str = "direct",
              granularity: str = "thread", instrument: bool = False,
              tasks: tuple = (), spawn_capacity: int = 0) -> ExecutorKernel:
        """``begin`` and one kernel: a module holding one kernel of this executor."""
        self.check(dispatch, granularity)
        return self.begin(module, root, tasks, spawn_capacity).kernel(dispatch, granularity,
                                                                      instrument)

    def emit_module(self, build: ExecutorBuild) -> Any:
        """Emit ``wake`` (and ``spawn``) and the task types' poll functions; returns the
        layout the kernels share (``ExecutorBuild.layout``)."""
        raise NotImplementedError

    def emit_kernel(self, build: ExecutorBuild, dispatch: str, granularity: str,
                    instrument: bool) -> ExecutorKernel:
        """Emit one kernel (its name from ``kernel_name``) and say how to launch it."""
        raise NotImplementedError

    def grid(self, backend, kernel: ExecutorKernel, ntasks: int, block: int) -> int:
        """Blocks of ``block`` threads a run over ``ntasks`` roots launches: a thread a
        root (a persistent executor launches what fits at once)."""
        return -(-ntasks // block)

    def prepare(self, backend, kernel: ExecutorKernel, grid, block, run: LaunchArgs) -> None:
        """What precedes every run, timed runs too, in stream order: zero the executor's
        state (queues and pool counters start empty). Executors that check the launch or
        zero more override this."""
        backend.zero(run.frames, kernel.state_bytes)

    def launch(self, backend, kernel: ExecutorKernel, grid, block, run: LaunchArgs,
               checked: bool = False):
        """Run the executor once over all tasks: ``prepare``, then one kernel launch."""
        self.prepare(backend, kernel, grid, block, run)
        return backend.launch(kernel.name, grid, block, run.params(), checked=checked,
                              shared=kernel.dynamic_smem)

    def enqueue(self, backend, kernel: ExecutorKernel, grid, block, run: LaunchArgs) -> None:
        """Queue one run without waiting (the timed form of ``launch``)."""
        self.prepare(backend, kernel, grid, block, run)
        backend.enqueue(kernel.name, grid, block, run.params(), shared=kernel.dynamic_smem)

    def graph_safe(self, kernel: ExecutorKernel) -> bool:
        """Whether ``enqueue`` is only kernel launches and memsets, so the timing protocol
        may batch runs into a captured graph (a memset on the capturing stream becomes a
        graph node): otherwise one run per sample is launched from Python, and a short run
        measures the host's launch rate, not the GPU."""
        return True


class Probe:
    """Instrumentation of one thread's run loop: counters live in registers while the
    kernel runs and are stored once at the end, so an instrumented build perturbs the
    loop by a few instructions per poll. With ``enabled=False`` every method emits
    nothing: timing builds carry no instrumentation at all.

    Counts made outside the run loop's function (``wakes`` inside ``wake``, queue
    operations inside the queue's ``.func``s) go straight to memory with ``count_at``.
    """

    def __init__(self, b: Builder, enabled: bool):
        self.b, self.enabled = b, enabled
        if not enabled:
            return
        self.regs = {f: b.mov(0, type=U64) for f in COUNTER_FIELDS}
        self.t0 = b.special("clock64")
        b.mov(b.special("globaltimer"), dst=self.regs["start_ns"])
        self._begin = b.reg(U64)

    def add(self, field: str, value=1) -> None:
        """counter += value (value: an int or a u32/u64 register)."""
        if not self.enabled:
            return
        b = self.b
        if not isinstance(value, int) and value.type.bits == 32:
            value = b.cvt(value, U64)
        b.add(self.regs[field], value, type=U64, dst=self.regs[field])

    def begin(self) -> None:
        """Mark the start of a timed region (a poll, an idle wait)."""
        if self.enabled:
            self.b.mov(self.b.special("clock64"), dst=self._begin)

    def end(self, field: str) -> None:
        """Add the cycles since ``begin`` to ``field`` (poll_cycles, idle_cycles)."""
        if self.enabled:
            b = self.b
            self.add(field, b.sub(b.special("clock64"), self._begin, type=U64))

    def poll_done(self, status) -> None:
        """After a poll: cycles in the poll body, polls, and pending polls."""
        if not self.enabled:
            return
        from harness.futures import PENDING

        self.end("poll_cycles")
        self.add("polls")
        self.add("pending_polls", self.b.selp(1, 0, self.b.setp("eq", status, PENDING), type=U32))

    def finish(self, counters, thread_index) -> None:
        """Add every count to ``counters[thread_index]`` (host-zeroed; ``count_at`` may have
        counted there already) and store smid and the timestamps (skipped when counters == 0)."""
        if not self.enabled:
            return
        b = self.b
        b.sub(b.special("clock64"), self.t0, type=U64, dst=self.regs["total_cycles"])
        b.cvt(b.special("smid"), U64, dst=self.regs["smid"])
        b.mov(b.special("globaltimer"), dst=self.regs["end_ns"])
        with b.if_(b.setp("ne", counters, 0, type=U64)):
            rec = b.add(counters, b.mul(thread_index, 8 * len(COUNTER_FIELDS), mode="wide"), type=U64)
            for k, f in enumerate(COUNTER_FIELDS):
                addr = b.add(rec, 8 * k, type=U64)
                if f in _STAMPS:
                    b.st("global", addr, self.regs[f], type=U64)
                else:  # add: count_at (in wake, spawn) may have counted here already
                    b.red("global", "add", addr, self.regs[f], type=U64)


def count_at(b: Builder, counters, thread_index, field: str, value=1) -> None:
    """``counters[thread_index].field += value`` in memory, for counts made in .funcs
    (call only in instrumented builds; a no-op when counters == 0)."""
    with b.if_(b.setp("ne", counters, 0, type=U64)):
        rec = b.add(counters, b.mul(thread_index, 8 * len(COUNTER_FIELDS), mode="wide"), type=U64)
        addr = b.add(rec, 8 * COUNTER_FIELDS.index(field), type=U64)
        b.red("global", "add", addr, b.mov(value, type=U64) if isinstance(value, int) else value)

POLL_FN_ROW = 0  # a task record's first rows: its poll_fn (u64), for indirect dispatch
HEADER_ROWS = 2


def first_poll(b: Builder, root: FutureDef, record, frame, task, exec_, args: list,
               dispatch: str, space: str = "global", keep_poll_fn: bool | None = None,
               poll_fn_row: int = POLL_FN_ROW):
    """The optimistic first poll of a task of type ``root``: ``start_<root>`` with its
    arguments in registers, so a task that is Ready at once touches no frame memory.
    ``direct`` calls it; ``indirect`` calls it through a register holding its address
    (Embassy's type-erased call). When it returns Pending and ``keep_poll_fn`` (default:
    indirect dispatch), ``poll_<root>`` is stored as the record's ``poll_fn`` for the polls
    that follow. Returns the status register."""
    from harness.futures import PENDING, st_row

    root.emit_start(b.module, space)
    root.emit(b.module, space)
    values = [frame, task, exec_] + list(args)
    if dispatch == "direct":
        status = b.call(root.start_name, values)
    else:
        fptr = b.mov(Sym(root.start_name))
        status = b.call(fptr, values, proto=b.module.functions[root.start_name])
    if keep_poll_fn if keep_poll_fn is not None else dispatch == "indirect":
        with b.if_(b.setp("eq", status, PENDING)):
            st_row(b, space, record, poll_fn_row, b.mov(Sym(root.poll_name)), U64)
    return status


def dispatch_poll(b: Builder, types: tuple, record, frame, task, exec_, dispatch: str,
                  space: str = "global", poll_fn_row: int = POLL_FN_ROW):
    """A later poll of the task at ``record``: ``indirect`` calls through its ``poll_fn``
    (Embassy's type-erased call); ``direct`` calls ``poll_<type>`` -- the one task type's,
    or, when several types may be polled here, the type whose address ``poll_fn`` holds
    (monomorphised dispatch). Returns the status register."""
    from harness.futures import ld_row

    if dispatch == "direct" and len(types) == 1:
        return b.call(types[0].poll_name, [frame, task, exec_])
    fptr = ld_row(b, space, record, poll_fn_row, U64)
    if dispatch == "indirect":
        return b.call(fptr, [frame, task, exec_], proto=b.module.functions[types[0].poll_name])
    status = b.mov(0, type=U32)
    done = b.new_label("polled")
    for t in types:
        with b.if_(b.setp("eq", fptr, b.mov(Sym(t.poll_name)), type=U64)):
            b.mov(b.call(t.poll_name, [frame, task, exec_]), dst=status)
            b.bra(done)
    b.trap()  # a poll_fn of no known type: a corrupted record
    b.place(done)
    return status


def define_noop_wake(module: Module) -> None:
    """``wake(task, exec)`` that does nothing (block_on re-polls anyway)."""
    declare_wake(module).ret()


def stop_requested(b: Builder, stop):
    """Has the host raised the stop flag (the watchdog)? One read of host memory."""
    return b.setp("ne", b.ld("global", stop, U32, sem="volatile"), 0)


class StopPoller:
    """The run loop's stop check: every STOP_EVERY iterations look at ``%globaltimer``; once
    STOP_INTERVAL_NS have passed since this thread's last read, read the stop flag.

    A warp or block worker agrees on the answer (``worker_any``), so only its first thread
    (lane 0, thread 0) reads: one PCIe read a worker, not one a thread. Workers that start
    together (a persistent grid) otherwise read together, every thread of ~10^5 in the same
    microseconds each interval, and one slow read holds its whole block at the next
    barrier (seen as wake-to-poll latency, H200: persistent idle_wait, direct dispatch,
    block workers, 75 µs mean against block_on's 2.2 µs)."""

    def __init__(self, b: Builder, granularity: str = "thread"):
        self.it = b.mov(0, type=U32)
        self.last = b.special("globaltimer")
        first = {"thread": None, "warp": "laneid", "block": "tid.x"}[granularity]
        self.reader = None if first is None else b.setp("eq", b.special(first), 0, type=U32)

    def poll(self, b: Builder, stop):
        """Emit the check; returns a predicate, true when the host asked to stop."""
        from harness.ptx.types import PRED

        stopped = b.setp("ne", self.it, self.it)  # false
        b.add(self.it, 1, dst=self.it)
        due = b.setp("eq", b.and_(self.it, STOP_EVERY - 1, type=U32), 0)
        if self.reader is not None:
            b.and_(due, self.reader, type=PRED, dst=due)
        with b.if_(due):
            now = b.special("globaltimer")
            with b.if_(b.setp("ge", b.sub(now, self.last, type=U64), STOP_INTERVAL_NS, type=U64)):
                b.mov(now, dst=self.last)
                b.mov(stop_requested(b, stop), type=PRED, dst=stopped)
        return stopped


def worker_all(b: Builder, p, granularity: str):
    """``p`` agreed over the worker: this thread's, or all of its warp's (``vote.sync``) or
    block's (``barrier.red``) -- what a warp or block worker leaves its run loop on. Not
    ``bar.red`` (``.aligned``): the lanes come from their own polls, and a warp that has
    not reconverged at an aligned barrier faults on Hopper (seen: embassy and backoff at
    block granularity on idle_wait, CUDA_ERROR_ILLEGAL_INSTRUCTION on the H200). The PTX
    ISA allows the non-aligned form in divergent code; compute-sanitizer's synccheck still
    reports "divergent thread(s) in block" there (H200, 2026-12-03): unresolved. The report
    is at the worker's stop barrier (``worker_any``, ``barrier.red.or``), where ptxas puts
    a ``WARPSYNC.COLLECTIVE`` before the ``BAR.RED``, in every block worker that polls
    through the ABI (block_on, persistent, embassy, backoff on idle_wait); inline block
    workers are clean. Moving both checks before the poll did not clear it (and cost
    embassy's and backoff's ping_pong 4%): reverted.
    ``bar.warp.sync`` then ``bar.red`` was tried: clean under synccheck and racecheck at
    4096 tasks, but it faulted the same way at 2^20 (embassy, indirect dispatch, idle_wait
    block, H200): a warp that has synced is not thereby converged for an aligned barrier.
    See results/notes/2026-12-03-h200-wgmma.md."""
    return {"thread": lambda: p, "warp": lambda: b.vote("all", p),
            "block": lambda: b.bar_red("and", p, aligned=False)}[granularity]()


def worker_any(b: Builder, p, granularity: str):
    """``p`` true for any thread of the worker. The stop flag is read by each lane at a
    slightly different time: agreeing on it makes the lanes leave the loop together, so
    the next collective is not left waiting for a lane that has gone."""
    return {"thread": lambda: p, "warp": lambda: b.vote("any", p),
            "block": lambda: b.bar_red("or", p, aligned=False)}[granularity]()
