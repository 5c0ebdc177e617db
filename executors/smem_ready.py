"""``smem_ready``: a block-local executor whose task frames and ready list live in shared
memory (architecture §5) -- what a GPU-native local executor gains from a faster address space.

Tasks are ``!Send``: the ``ntasks`` roots are split over the grid in contiguous runs of
``ceil(ntasks / nctaid)``, and each block owns, polls and keeps the frames of its own run
(plus what its tasks spawn). The workers are the block's threads (``thread``) or warps
(``warp``); any worker of a block may poll any ready task of that block.

Shared memory of a block (``slots`` is the launch's dynamic shared memory, the rest are
module-scope ``.shared`` arrays; all sized at build time)::

    slots   capacity records of [poll_fn: u64][frame] in u32 rows, 32 neighbouring
            slots interleaved row by row (a warp's accesses to one row hit 32 banks);
            frames are in the shared frame space
    state   capacity x u32                         WOKEN | RUNNING | DONE bits per task
    ready   ceil(capacity / 32) x u32              the ready list: one bit per task
    ctl     live: u32, alloc: u32, globals: u64, ntasks: u32, per: u32
            (tasks not yet Ready, next free slot, the frames pointer, roots, roots per block)

**Task ids** (the waker's ``task``): root ``i`` is task ``i`` -- the same number as its
``task`` argument, as under every executor, so a task can wake another root by index --
and lives in block ``i / per``, slot ``i % per``; a spawned task is ``ntasks + block *
capacity + slot``. ``wake`` decodes an id with one division; ids that name no
initialised slot are ignored, so a bad id can never make garbage runnable.

**Ready list: a bitmask, not a ring.** A wake is one idempotent ``atom.shared.or`` that
coalesces duplicate wakes by itself (Embassy needs a separate RUN_QUEUED bit for that),
can never overflow, and needs no publication protocol (a multi-producer ring needs a
per-slot full/empty handshake, i.e. a spin, on both sides). Claims spread over
``capacity / 32`` words instead of one hot head index: a ``thread`` worker claims one bit
with ``atom.and`` -- starting at its own lane's bit of its warp's word, so when every task
is ready each thread claims a different bit and no claim fails -- and a ``warp`` worker
claims a whole word (32 tasks) with one ``atom.exch`` and polls them in lockstep. What a
ring gives and a bitmask does not is FIFO order; the cursor below gives the fairness that
matters (a bounded poll gap) without it.

**Task state** (one u32 per task, tokio-like): ``wake`` does ``old = atom.or(state,
WOKEN)`` and sets the ready bit only if the task was neither queued nor running. A worker
that claims a ready bit swaps the state to RUNNING (consuming the wake); after a Pending
poll ``atom.and(state, ~RUNNING)`` returns whether a wake came in meanwhile, and if so the
worker re-sets the ready bit itself. So a task is never polled by two workers at once and
no wake is lost. Ready sets DONE and keeps RUNNING, so later wakes are no-ops: no poll
after Ready. The shared atomics are ``acq_rel.cta``: a task polled by another thread than
last time sees its frame as the last poll left it.

**Cross-block wakes** go through a global mailbox per block: ``capacity`` bits plus a
flag. The waker does ``red.or`` of the task's bit, then ``red.release.gpu.or`` of the
flag; an owning worker that finds the flag set swaps it to 0 (acquire) and then swaps each
word to 0, waking every task whose bit it took. Bit before flag, flag before bits, so no
wake is lost, and like the bitmask the mailbox cannot overflow. Workers look at the
mailbox after every sweep of the ready list that found nothing, and at least every
``MAIL_CHECK_EVERY`` polls otherwise (a busy block must not starve its mail). A block
whose roots are done exits; a wake for one of its tasks after that is a no-op anyway.

**Fairness**: each ``thread`` worker keeps a cursor (word, bit) that moves past every task
it claims, and a ``warp`` worker visits the words round robin, so a task that wakes
itself forever cannot starve the others. Between two polls of a hog by one worker, that
worker's cursor passes every other slot; passing a ready task's bit, it claims it, or
finds it already claimed (being polled). So while a task stays ready, each worker of its
block polls any other task at most twice before it is polled: ``poll_gap_bound`` is 2 x the
workers of a block (threads, or warps), for the geometry of the last launch. Measured on
the emulator (random schedules): 1, 2, 4, 7 for 1, 2, 4, 8 thread workers.

**Capacity** per block = the most slots whose frames, state words and ready bits fit the
card's opt-in shared memory per block (227 KiB on sm_90; the slots are dynamic shared
memory, which may exceed the 48 KiB a kernel can declare statically), capped by
``capacity`` when given. By default, shared memory beyond 48 KiB is taken only as far as
``DEFAULT_CAPACITY`` slots need it (a 680 B frame: 256 slots in 177 KB), and the room for
spawned tasks only within 48 KiB: taking all 227 KiB for fan_out's spawn room left one
block per SM (6% occupancy, 4-8x slower on the H200). Otherwise the cap is
``DEFAULT_CAPACITY`` plus the slots the workload may spawn: a smaller array leaves room
for more blocks per SM (H100, seed_demo, block 128: 256 slots take 41 KB and allow 5
blocks per SM, 0.112 ms for 2^20 tasks; 128 slots allow the 6 that the registers do,
0.087 ms -- results/notes/2026-11-28-h100-smem-ready.md). The default stays 256 so that
blocks of up to 256 threads run with one root per thread. More roots per block than the
capacity is a clear error on the host (before the launch) and ``ERROR_SMEM_FULL`` on the
device; a spawn into a full block is ``ERROR_POOL_FULL``.

**Spawn** (``spawn(task, exec, poll_fn, args) -> u32``, the run-queue ABI): the child goes
to the spawner's block -- the next slot of a bump allocator in shared memory, counted live
before it is queued -- with a root-signature frame ``(task = its id, args)``. In
``direct`` mode a block with several task types compares the slot's poll_fn with each
type and calls that one directly.

``exec`` (the waker's executor word) is the ``counters`` pointer: the executor itself is
implicitly the current block (``%ctaid`` and the shared arrays), so ``exec`` is free to
tell ``wake`` where instrumented builds count wakes (0 in timing builds).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from executors.base import (
    ERROR_POOL_FULL, ERRORS, HEADER_ROWS, KERNEL_PARAMS, POLL_FN_ROW, Executor, ExecutorBuild,
    ExecutorKernel, Probe, count_at, dispatch_poll,
)
from harness.errors import PollbenchError
from harness.futures import (
    READY, ROW_BYTES, SPAWN_FAILED, FutureDef, declare_spawn, declare_wake, record_addr,
    records_bytes, st_row, write_task_args,
)
from harness.ptx import Builder, Module, Sym
from harness.ptx.ir import LocalVar
from harness.ptx.types import S32, TYPES, U32, U64

B32 = TYPES["b32"]
WOKEN, RUNNING, DONE = 1, 2, 4
SLOT_HEADER_ROWS = HEADER_ROWS  # poll_fn (u64) for indirect dispatch and spawned task types
STATIC_SMEM_LIMIT = 48 * 1024  # shared memory per block without the opt-in (unknown arch)
DEFAULT_CAPACITY = 256  # slots per block unless the workload spawns (2x the default block)
CTL_LIVE, CTL_ALLOC, CTL_GLOBALS, CTL_NTASKS, CTL_PER, CTL_BYTES = 0, 4, 8, 16, 20, 32
STATE_BYTES = 16  # global: the error word, then the mailboxes
ERROR_OFFSET = 0
ERROR_SMEM_FULL = 2
ERRORS.setdefault(ERROR_SMEM_FULL, "more tasks in a block than its shared memory holds")
MAIL_CHECK_EVERY = 64  # polls between mailbox checks of a busy worker
STOP_CHECK_EVERY = 64  # idle sweeps between reads of the host's stop flag
BUSY_STOP_EVERY = 4  # mailbox checks of a busy worker between reads of the stop flag
SYNC = dict(sem="acq_rel", scope="cta")  # the executor's shared atomics
RELEASE = dict(sem="release", scope="cta")  # red has no acquire side


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


@dataclass(frozen=True)
class Layout:
    """Where everything lives, for one frame size and capacity."""

    capacity: int  # task slots per block
    slot_rows: int  # SLOT_HEADER_ROWS + frame rows

    @property
    def slot_bytes(self) -> int:
        return 4 * self.slot_rows

    @property
    def slots_bytes(self) -> int:
        """The slot records: the dynamic shared memory of every launch."""
        return records_bytes(self.slot_rows, self.capacity)

    @property
    def words(self) -> int:
        return -(-self.capacity // 32)

    @property
    def shared_bytes(self) -> int:
        return shared_bytes(self.capacity, self.slot_rows)

    @property
    def mailbox_bytes(self) -> int:
        """Per block, in global memory: the flag word, then ``words`` bits words."""
        return _align(4 * (1 + self.words), 8)


def shared_bytes(capacity: int, slot_rows: int) -> int:
    """Shared memory of a block with ``capacity`` slots (each array 16-aligned; the slot
    records in whole groups of 32)."""
    words = -(-capacity // 32)
    return (records_bytes(slot_rows, capacity) + _align(4 * capacity, 16)
            + _align(4 * words, 16) + CTL_BYTES)


def capacity_for(slot_rows: int, limit: int = STATIC_SMEM_LIMIT) -> int:
    """The most task slots of ``slot_rows`` rows whose shared memory fits ``limit`` bytes."""
    cap = max(0, (limit - CTL_BYTES - 48) * 8 // (8 * (4 * slot_rows + 4) + 1))
    while cap and shared_bytes(cap, slot_rows) > limit:
        cap -= 1
    while shared_bytes(cap + 1, slot_rows) <= limit:
        cap += 1
    return cap


@dataclass
class SmemReadyKernel(ExecutorKernel):
    """An ``ExecutorKernel`` plus what the host checks before a launch."""

    layout: Layout | None = None
    granularity: str = "thread"
    workers: int = 1024  # per block, of the last launch (before one: the most there can be)

    def frames_bytes(self, ntasks: int) -> int:
        """The global buffer: the state, then one mailbox per block with tasks (at most
        one block per task). The frames themselves are in shared memory."""
        return self.state_bytes + max(ntasks, 1) * self.layout.mailbox_bytes


class SmemReady(Executor):
    name = "smem_ready"
    granularities = ("thread", "warp")
    summary = "block-local !Send tasks: frames and a ready bitmask in shared memory, cross-block wakes through a global mailbox"
    supports_spawn = True
    frame_space = "shared"
    racecheck_ordered_by = "MP+atom.shared"  # run_task's hand-offs: acq_rel .cta atomics

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity  # slots per block; None: DEFAULT_CAPACITY + spawn room

    # ----------------------------------------------------------------- host side

    def poll_gap_bound(self, kernel: SmemReadyKernel) -> int:
        """Most polls of another task between two polls of a continuously ready task: two
        per worker of its block (see the module's Fairness)."""
        return 2 * kernel.workers

    def layout(self, module: Module, frame_rows: int, spawn_capacity: int = 0) -> Layout:
        """Slots per block (module docstring, Capacity): ``capacity`` when given, as far as
        the card's opt-in shared memory holds it; by default ``DEFAULT_CAPACITY`` slots,
        taking shared memory beyond 48 KiB only as far as those need (every byte more costs
        resident blocks), and room for spawned tasks only within 48 KiB."""
        from harness.compile import arch_limits

        slot = SLOT_HEADER_ROWS + frame_rows
        try:
            limit = arch_limits(module.arch).smem_per_block_optin
        except PollbenchError:
            limit = STATIC_SMEM_LIMIT
        fit = capacity_for(slot, limit)
        if fit == 0:
            raise PollbenchError(f"smem_ready: one task frame ({4 * frame_rows} B + {4 * SLOT_HEADER_ROWS} B "
                                 f"header) does not fit {limit} B of shared memory")
        if self.capacity is not None:
            return Layout(min(fit, self.capacity), slot)
        roomy = max(capacity_for(slot, min(limit, STATIC_SMEM_LIMIT)), min(fit, DEFAULT_CAPACITY))
        return Layout(min(roomy, DEFAULT_CAPACITY + spawn_capacity), slot)

    def prepare(self, backend, kernel: SmemReadyKernel, grid, block, run) -> None:
        """Check that each block's roots fit its shared memory, zero the error word and the
        mailboxes of the blocks that have tasks."""
        n = run.ntasks
        nblocks = _count(grid)
        per = -(-n // nblocks) if n else 0
        lay = kernel.layout
        if per > lay.capacity:
            raise PollbenchError(
                f"smem_ready: {per} tasks per block do not fit in shared memory: a block holds "
                f"{lay.capacity} tasks of {lay.slot_bytes} B ({lay.shared_bytes} B of .shared); "
                f"launch more blocks (at least {-(-n // lay.capacity)}) or fewer tasks")
        if kernel.granularity == "warp" and _count(block) % 32:
            raise PollbenchError(f"smem_ready with warp workers needs whole warps, "
                                 f"not a block of {_count(block)} threads")
        used = -(-n // per) if per else 0
        kernel.workers = _count(block) // (32 if kernel.granularity == "warp" else 1)
        backend.zero(run.frames, STATE_BYTES + used * lay.mailbox_bytes)

    # ---------------------------------------------------------------- device side

    def emit_module(self, build: ExecutorBuild) -> _Arrays:
        """The shared arrays, sized from the task types' frames (laid out before anything is
        emitted: ``FutureDef.frame_rows``), ``wake``, ``spawn`` and the polls."""
        frame = max(t.frame_rows("shared") for t in build.types)
        layout = self.layout(build.module, frame, build.spawn_capacity)
        arrays = _Arrays.define(build.module, layout, build.root)
        build.emit_polls()
        return arrays

    def emit_kernel(self, build: ExecutorBuild, dispatch: str, granularity: str,
                    instrument: bool) -> SmemReadyKernel:
        root, arrays = build.root, build.layout
        name = self.kernel_name(granularity, dispatch, root, instrument)
        _Kernel(build.module, name, build.types, arrays, dispatch, granularity, instrument).emit()
        return SmemReadyKernel(name, rows=arrays.layout.slot_rows, frame_bytes=root.frame_size,
                               state_bytes=STATE_BYTES, capacity=None,
                               error_offset=ERROR_OFFSET, layout=arrays.layout,
                               dynamic_smem=arrays.layout.slots_bytes, granularity=granularity)


def _count(dim) -> int:
    if isinstance(dim, int):
        return dim
    n = 1
    for d in dim:
        n *= int(d)
    return n


# ------------------------------------------------------------------ shared arrays


@dataclass
class _Arrays:
    """The module's shared arrays, which its ``wake`` and ``spawn`` address: every
    smem_ready kernel of a module shares them (``ExecutorBuild.layout``)."""

    layout: Layout
    slots: Sym
    state: Sym
    ready: Sym
    ctl: Sym
    task_type: FutureDef  # any task type: all have the root signature's argument rows

    @classmethod
    def define(cls, module: Module, layout: Layout, task_type: FutureDef) -> _Arrays:
        """Declare the arrays in ``module`` and write its ``wake`` and ``spawn``."""
        def arr(name, nbytes):
            module.globals.append(LocalVar("shared", f"smem_ready_{name}", nbytes, 16))
            return Sym(f"smem_ready_{name}")
        a = cls(layout, Builder.dynamic_shared(module, "smem_ready_slots"),
                arr("state", _align(4 * layout.capacity, 16)),
                arr("ready", _align(4 * layout.words, 16)), arr("ctl", CTL_BYTES), task_type)
        _define_wake(module, a)
        _define_spawn(module, a)
        return a


def _addr(b: Builder, sym: Sym, index=None, scale: int = 4):
    """Shared-window address of ``sym[index]`` (u32)."""
    base = b.mov(sym, type=U32)
    if index is None:
        return base
    return b.mad(index, scale, base, type=U32)


def _slot_addr(b: Builder, a: _Arrays, slot):
    """Shared-window address of ``slot``'s record (u32)."""
    return record_addr(b, b.mov(a.slots, type=U32), slot, a.layout.slot_rows, addr_type=U32)


def _ctz(b: Builder, x):
    """Count trailing zeros of a non-zero b32 (``clz(brev(x))``; PTX has no ctz)."""
    return b.clz(b.brev(x, type=B32), type=B32)


def _wake_local(b: Builder, a: _Arrays, slot, counters=None):
    """Make ``slot`` of the current block ready: set WOKEN, and its ready bit if it was
    neither queued nor running (a running task is re-queued by its poller). A slot not
    yet initialised (>= alloc) is left alone."""
    alloc = b.ld("shared", b.add(_addr(b, a.ctl), CTL_ALLOC, type=U32), U32, sem="relaxed",
                 scope="cta")
    with b.if_(b.setp("lt", slot, alloc, type=U32)):
        old = b.atom("shared", "or", _addr(b, a.state, slot), WOKEN, type=B32, **SYNC)
        idle = b.setp("eq", b.and_(old, WOKEN | RUNNING, type=B32), 0, type=B32)
        with b.if_(idle):
            word = _addr(b, a.ready, b.shr(slot, 5, type=U32))
            b.red("shared", "or", word, _bit(b, b.and_(slot, 31, type=B32)), type=B32, **RELEASE)
            if counters is not None:
                count_at(b, counters, _gtid(b), "queue_ops")


def _bit(b: Builder, i):
    """``1 << i`` (b32)."""
    return b.shl(b.mov(1, type=B32), i, type=B32)


def _gtid(b: Builder):
    return b.global_index()


def _mailbox(b: Builder, a: _Arrays, block):
    """Global address of ``block``'s mailbox (from the globals pointer kept in ctl)."""
    globals_ = b.ld("shared", b.add(_addr(b, a.ctl), CTL_GLOBALS, type=U32), U64)
    off = b.mul(block, a.layout.mailbox_bytes, mode="wide", type=U32)
    return b.add(b.add(globals_, STATE_BYTES, type=U64), off, type=U64)


def _define_wake(module: Module, a: _Arrays) -> None:
    """``wake(task, exec)``: decode the id into (block, slot) (module docstring, Task ids).
    Same block: shared atomics; another block: its mailbox. ``exec`` is the counters
    pointer (0: not instrumented)."""
    b = declare_wake(module)
    task, counters = b.param("task"), b.param("exec")
    cap = a.layout.capacity
    count_at(b, counters, _gtid(b), "wakes")
    ctl = _addr(b, a.ctl)
    n = b.ld("shared", b.add(ctl, CTL_NTASKS, type=U32), U32)
    owner, slot = b.reg(U32), b.reg(U32)
    root = b.setp("lt", task, n, type=U32)
    with b.if_(root):  # root i: block i / per, slot i % per
        per = b.ld("shared", b.add(ctl, CTL_PER, type=U32), U32)
        b.div(task, per, type=U32, dst=owner)
        b.sub(task, b.mul(owner, per, type=U32), type=U32, dst=slot)
    with b.if_(root, negate=True):  # spawned: ntasks + block * capacity + slot
        t = b.sub(task, n, type=U32)
        b.div(t, cap, type=U32, dst=owner)
        b.sub(t, b.mul(owner, cap, type=U32), type=U32, dst=slot)
        with b.if_(b.setp("ge", owner, b.special("nctaid.x"), type=U32)):
            b.ret()  # no such block: a bad id, ignored
    local = b.setp("eq", owner, b.special("ctaid.x"))
    with b.if_(local):
        _wake_local(b, a, slot, counters)
        b.ret()
    mb = _mailbox(b, a, owner)
    word = b.add(mb, b.cvt(b.mul(b.add(b.shr(slot, 5, type=U32), 1, type=U32), 4, type=U32), U64), type=U64)
    b.red("global", "or", word, _bit(b, b.and_(slot, 31, type=B32)), type=B32,
          sem="relaxed", scope="gpu")
    b.red("global", "or", mb, b.mov(1, type=B32), type=B32, sem="release", scope="gpu")
    count_at(b, counters, _gtid(b), "queue_ops")
    b.ret()


def _define_spawn(module: Module, a: _Arrays) -> None:
    """``spawn(task, exec, poll_fn, args) -> u32``: a new task in the spawner's block (its
    tasks are !Send: the spawner runs in this block). Claims the next slot with
    ``atom.shared.add`` (a bump allocator: slots are not reused within a run), counts it
    live *before* it can be polled (the spawner's own task keeps ``live`` above 0 meanwhile,
    so the block cannot finish under it), writes a root-signature frame ``(task, args)``
    and wakes it. A full block sets ERROR_POOL_FULL and returns SPAWN_FAILED."""
    b = declare_spawn(module)
    counters = b.param("exec")
    ctl = _addr(b, a.ctl)
    slot = b.atom("shared", "add", b.add(ctl, CTL_ALLOC, type=U32), 1, type=U32)
    with b.if_(b.setp("ge", slot, a.layout.capacity, type=U32)):
        globals_ = b.ld("shared", b.add(ctl, CTL_GLOBALS, type=U32), U64)
        b.st("global", b.add(globals_, ERROR_OFFSET, type=U64), b.mov(ERROR_POOL_FULL, type=U32),
             sem="relaxed", scope="gpu")
        b.ret(b.mov(SPAWN_FAILED, type=U32))
    b.red("shared", "add", b.add(ctl, CTL_LIVE, type=U32), b.mov(1, type=U32), **RELEASE)
    hdr = _slot_addr(b, a, slot)
    frame = b.add(hdr, SLOT_HEADER_ROWS * ROW_BYTES, type=U32)
    n = b.ld("shared", b.add(ctl, CTL_NTASKS, type=U32), U32)
    task = b.add(n, b.mad(b.special("ctaid.x"), a.layout.capacity, slot, type=U32), type=U32)
    st_row(b, "shared", hdr, POLL_FN_ROW, b.param("poll_fn"), U64)
    write_task_args(b, "shared", frame, a.task_type, [task, b.param("args")])
    b.st("shared", _addr(b, a.state, slot), b.mov(0, type=B32))
    _wake_local(b, a, slot, counters)  # publishes the frame (release) and queues it
    b.ret(task)


# ------------------------------------------------------------------------ kernel


@contextlib.contextmanager
def _strided(b: Builder, start, step, limit):
    """``for i in range(start, limit, step)`` (u32)."""
    i = b.mov(start, type=U32)
    with b.loop() as lp:
        lp.break_if(b.setp("ge", i, limit, type=U32))
        yield i
        b.add(i, step, type=U32, dst=i)


class _Kernel:
    """Emits one smem_ready kernel: prologue (split the roots, fill shared memory), the
    run loop of a thread or warp worker, the epilogue (counters)."""

    def __init__(self, module, name, types, arrays, dispatch, granularity, instrument):
        self.m, self.name, self.types, self.a = module, name, types, arrays
        self.root = types[0]
        self.lay = arrays.layout
        self.dispatch, self.granularity, self.instrument = dispatch, granularity, instrument

    def emit(self) -> None:
        b = self.b = Builder.entry(self.m, self.name, KERNEL_PARAMS)
        self.probe = Probe(b, self.instrument)
        self.counters = b.param("counters")
        self.tid, self.ntid = b.special("tid.x"), b.special("ntid.x")
        self.prologue()
        if self.granularity == "thread":
            self.thread_loop()
        else:
            self.warp_loop()
        self.probe.finish(self.counters, b.global_index())
        b.ret()

    # ------------------------------------------------------------ prologue

    def prologue(self) -> None:
        b, a, lay = self.b, self.a, self.lay
        frames, ntasks, args = b.param("frames"), b.param("ntasks"), b.param("args")
        ctaid, nctaid = b.special("ctaid.x"), b.special("nctaid.x")
        per = b.div(b.add(ntasks, b.sub(nctaid, 1, type=U32), type=U32), nctaid, type=U32)
        first = b.mul(ctaid, per, type=U32)
        with b.if_(b.setp("ge", first, ntasks, type=U32)):
            b.exit()  # a block with no tasks (more blocks than tasks)
        nroots = b.min(per, b.sub(ntasks, first, type=U32), type=U32)
        self.first, self.nroots, self.ntasks = first, nroots, ntasks
        with b.if_(b.setp("gt", nroots, lay.capacity, type=U32)):
            with b.if_(b.setp("eq", self.tid, 0, type=U32)):
                b.atom("global", "cas", b.add(frames, ERROR_OFFSET, type=U64), 0,
                       ERROR_SMEM_FULL, type=B32)
            b.exit()
        with _strided(b, self.tid, self.ntid, nroots) as i:
            self.spawn_root(i, b.add(first, i, type=U32), args)
        with _strided(b, self.tid, self.ntid, lay.capacity) as i:  # roots queued, the rest idle
            state = b.selp(WOKEN, 0, b.setp("lt", i, nroots, type=U32), type=B32)
            b.st("shared", _addr(b, a.state, i), state, type=B32)
        with _strided(b, self.tid, self.ntid, lay.words) as w:
            k = b.max(b.sub(nroots, b.shl(w, 5, type=B32), type=S32), 0, type=S32)
            bits = b.sub(_bit(b, k), 1, type=U32)  # shl by 32 is 0 in PTX
            b.st("shared", _addr(b, a.ready, w), bits, type=B32)
        with b.if_(b.setp("eq", self.tid, 0, type=U32)):
            ctl = _addr(b, a.ctl)
            b.st("shared", b.add(ctl, CTL_LIVE, type=U32), nroots, type=U32)
            b.st("shared", b.add(ctl, CTL_ALLOC, type=U32), nroots, type=U32)
            b.st("shared", b.add(ctl, CTL_GLOBALS, type=U32), frames, type=U64)
            b.st("shared", b.add(ctl, CTL_NTASKS, type=U32), ntasks, type=U32)
            b.st("shared", b.add(ctl, CTL_PER, type=U32), per, type=U32)
        b.bar_sync(0)

    def slot_addr(self, slot):
        return _slot_addr(self.b, self.a, slot)

    def spawn_root(self, slot, task, args) -> None:
        """Root ``task`` into ``slot``: poll_fn, arguments, resume = 0 (its state is set
        to WOKEN with the others')."""
        b, root = self.b, self.root
        hdr = self.slot_addr(slot)
        frame = b.add(hdr, SLOT_HEADER_ROWS * ROW_BYTES, type=U32)
        if self.dispatch == "indirect" or len(self.types) > 1:
            st_row(b, "shared", hdr, POLL_FN_ROW, b.mov(Sym(root.poll_name)), U64)
        write_task_args(b, "shared", frame, root, [task, args])

    # ------------------------------------------------------------ one task

    def run_task(self, slot, word, bit) -> None:
        """Poll the claimed task in ``slot`` (its ready bit ``bit`` of ``word`` is clear).

        Who may touch a slot's frame rows, and in what order (compute-sanitizer's racecheck
        follows barriers only, so it reports these pairs as hazards -- 80 on the H200 at
        1024 tasks, every one a frame row or a ready word): the frame is written by
        ``spawn``/the prologue (the arguments) and by the worker whose poll returns Pending
        (the spilled slots), and read by the next worker that polls the task. Each hand-off
        is release/acquire at ``.cta`` on the task's words: a Pending poll ends with
        ``atom.and(state, ~RUNNING)`` (acq_rel) before the task can be claimed again, and the
        next poll starts with this ``atom.exch(state, RUNNING)`` (acq_rel); a spawn's
        ``red.release.or`` of the ready bit is read by the claimer's ``atom.and`` (acq_rel)
        on that word; the prologue's writes precede the block's ``bar.sync``. The ``ld
        .volatile`` of a ready word in the sweeps is only a hint of which bit to claim:
        the claim is the atomic."""
        b, a, probe = self.b, self.a, self.probe
        state = _addr(b, a.state, slot)
        b.atom("shared", "exch", state, RUNNING, type=B32, **SYNC)  # consumes the wake
        hdr = self.slot_addr(slot)
        frame = b.cvt(b.add(hdr, SLOT_HEADER_ROWS * ROW_BYTES, type=U32), U64)
        task = self.task_id(slot)
        probe.begin()
        status = self.dispatch_poll(hdr, frame, task)
        probe.poll_done(status)
        with b.if_(b.setp("eq", status, READY, type=U32)):
            b.red("shared", "or", state, DONE, type=B32, **RELEASE)  # RUNNING stays: wakes are no-ops
            b.red("shared", "add", b.add(_addr(b, a.ctl), CTL_LIVE, type=U32), 0xFFFFFFFF,
                  type=U32, **RELEASE)
        with b.if_(b.setp("ne", status, READY, type=U32)):
            old = b.atom("shared", "and", state, ~RUNNING & 0xFFFFFFFF, type=B32, **SYNC)
            woken = b.setp("ne", b.and_(old, WOKEN, type=B32), 0, type=B32)
            with b.if_(woken):  # woken while running: we queue it again
                b.red("shared", "or", word, bit, type=B32, **RELEASE)
                probe.add("queue_ops")

    def task_id(self, slot):
        """The id of the task in ``slot`` of this block (module docstring, Task ids)."""
        b = self.b
        spawned = b.add(self.ntasks, b.mad(b.special("ctaid.x"), self.lay.capacity, slot,
                                           type=U32), type=U32)
        return b.selp(b.add(self.first, slot, type=U32), spawned,
                      b.setp("lt", slot, self.nroots, type=U32), type=U32)

    def dispatch_poll(self, hdr, frame, task):
        """Poll the task in a slot (``executors.base.dispatch_poll`` on shared records)."""
        return dispatch_poll(self.b, self.types, hdr, frame, task, self.counters, self.dispatch,
                             space="shared")

    # ------------------------------------------------------------ housekeeping

    def drain_mailbox(self) -> None:
        """Take this block's cross-block wakes (if its flag is set) and wake those tasks."""
        b, a = self.b, self.a
        mb = _mailbox(b, a, b.special("ctaid.x"))
        flag = b.ld("global", mb, B32, sem="relaxed", scope="gpu")
        with b.if_(b.setp("ne", flag, 0, type=B32)):
            took = b.atom("global", "exch", mb, 0, type=B32, sem="acquire", scope="gpu")
            with b.if_(b.setp("ne", took, 0, type=B32)):
                with _strided(b, 0, 1, self.lay.words) as w:
                    addr = b.add(mb, b.cvt(b.shl(b.add(w, 1, type=U32), 2, type=B32), U64), type=U64)
                    bits = b.atom("global", "exch", addr, 0, type=B32, sem="relaxed", scope="gpu")
                    with b.loop() as lp:
                        lp.break_if(b.setp("eq", bits, 0, type=B32))
                        slot = b.add(b.shl(w, 5, type=B32), _ctz(b, bits), type=U32)
                        _wake_local(b, a, slot)
                        b.and_(bits, b.sub(bits, 1, type=U32), type=B32, dst=bits)

    def idle_check(self, done) -> None:
        """After a sweep that found nothing: done when every task of the block is Ready;
        else take the mail, and now and then look at the host's stop flag."""
        b, a = self.b, self.a
        live = b.ld("shared", b.add(_addr(b, a.ctl), CTL_LIVE, type=U32), U32, sem="volatile")
        b.selp(1, 0, b.setp("eq", live, 0, type=U32), type=U32, dst=done)
        with b.if_(b.setp("eq", done, 0, type=U32)):
            self.busy_check(done, STOP_CHECK_EVERY)

    def busy_check(self, done, every: int) -> None:
        """Take the mail; every ``every`` calls, read the host's stop flag into ``done``
        (a block that always has work must still stop: a self-waking task never idles)."""
        b = self.b
        self.drain_mailbox()
        b.add(self.spins, 1, type=U32, dst=self.spins)
        check = b.setp("eq", b.and_(self.spins, every - 1, type=B32), 0, type=B32)
        with b.if_(check):
            flag = b.ld("global", b.param("stop"), U32, sem="volatile")
            b.selp(1, 0, b.setp("ne", flag, 0, type=U32), type=U32, dst=done)

    # ------------------------------------------------------------ run loops

    def loop_registers(self) -> tuple:
        """A worker's loop state: claimed anything in this sweep, polls since the last
        mailbox check, done; ``self.spins`` (housekeeping calls); the sweep's start clock
        (instrumented builds)."""
        b = self.b
        found, since_mail = b.mov(0, type=U32), b.mov(0, type=U32)
        self.spins = b.mov(0, type=U32)
        done = b.mov(0, type=U32)
        return found, since_mail, done, b.special("clock64") if self.instrument else None

    def thread_loop(self) -> None:
        """Each thread claims single ready bits, from a cursor that starts at its own lane's
        bit of its warp's word and moves past every task it claims."""
        b, a, lay, probe = self.b, self.a, self.lay, self.probe
        lane = b.and_(self.tid, 31, type=B32)
        cw = b.rem(b.shr(self.tid, 5, type=U32), lay.words, type=U32)
        cb = b.mov(lane, type=U32)
        found, since_mail, done, sweep_t0 = self.loop_registers()
        with b.loop() as loop:
            word = _addr(b, a.ready, cw)
            bits = b.ld("shared", word, B32, sem="volatile")
            cand = b.and_(bits, b.shl(b.mov(0xFFFFFFFF, type=B32), cb, type=B32), type=B32)
            have = b.setp("ne", cand, 0, type=B32)
            with b.if_(have):
                bit_i = _ctz(b, cand)
                bit = b.shl(b.mov(1, type=B32), bit_i, type=B32)
                old = b.atom("shared", "and", word, b.not_(bit, type=B32), type=B32, **SYNC)
                probe.add("queue_ops")
                lost = b.setp("eq", b.and_(old, bit, type=B32), 0, type=B32)
                with b.if_(lost):  # another worker took it: look again at this word
                    probe.add("cas_retries")
                    loop.continue_if(lost)
                self.run_task(b.mad(cw, 32, bit_i, type=U32), word, bit)
                b.mov(1, type=U32, dst=found)
                b.add(since_mail, 1, type=U32, dst=since_mail)
                with b.if_(b.setp("ge", since_mail, MAIL_CHECK_EVERY, type=U32)):
                    self.busy_check(done, BUSY_STOP_EVERY)
                    b.mov(0, type=U32, dst=since_mail)
                    loop.break_if(b.setp("ne", done, 0, type=U32))
                b.add(bit_i, 1, type=U32, dst=cb)
                loop.continue_if(b.setp("lt", cb, 32, type=U32))
            # nothing at or after the cursor in this word: next word
            b.mov(0, type=U32, dst=cb)
            b.add(cw, 1, type=U32, dst=cw)
            wrapped = b.setp("eq", cw, lay.words, type=U32)
            with b.if_(wrapped):
                b.mov(0, type=U32, dst=cw)
                with b.if_(b.setp("eq", found, 0, type=U32)):
                    if self.instrument:
                        probe.add("idle_cycles", b.sub(b.special("clock64"), sweep_t0, type=U64))
                    self.idle_check(done)
                    loop.break_if(b.setp("ne", done, 0, type=U32))
                b.mov(0, type=U32, dst=found)
                if self.instrument:
                    b.mov(b.special("clock64"), dst=sweep_t0)

    def warp_loop(self) -> None:
        """Each warp takes a whole word of ready bits (lane 0's ``atom.exch``) and its lanes
        poll those tasks in lockstep; the warp visits the words round robin."""
        b, a, lay, probe = self.b, self.a, self.lay, self.probe
        lane = b.and_(self.tid, 31, type=B32)
        leader = b.setp("eq", lane, 0, type=B32)
        cw = b.rem(b.shr(self.tid, 5, type=U32), lay.words, type=U32)
        found, since_mail, done, sweep_t0 = self.loop_registers()
        with b.loop() as loop:
            word = _addr(b, a.ready, cw)
            took = b.mov(0, type=B32)
            with b.if_(leader):
                bits = b.ld("shared", word, B32, sem="volatile")
                with b.if_(b.setp("ne", bits, 0, type=B32)):
                    b.atom("shared", "exch", word, 0, type=B32, dst=took, **SYNC)
                    probe.add("queue_ops")
            took = b.shfl("idx", took, 0)
            with b.if_(b.setp("ne", took, 0, type=B32)):
                b.mov(1, type=U32, dst=found)
                b.add(since_mail, 1, type=U32, dst=since_mail)
                bit = b.shl(b.mov(1, type=B32), lane, type=B32)
                with b.if_(b.setp("ne", b.and_(took, bit, type=B32), 0, type=B32)):
                    self.run_task(b.mad(cw, 32, lane, type=U32), word, bit)
            b.bar_warp_sync()
            b.add(cw, 1, type=U32, dst=cw)
            with b.if_(b.setp("eq", cw, lay.words, type=U32)):
                b.mov(0, type=U32, dst=cw)
                with b.if_(b.setp("eq", found, 0, type=U32)):
                    if self.instrument:
                        probe.add("idle_cycles", b.sub(b.special("clock64"), sweep_t0, type=U64))
                    with b.if_(leader):
                        self.idle_check(done)
                    b.shfl("idx", done, 0, dst=done)  # one decision for the whole warp
                    loop.break_if(b.setp("ne", done, 0, type=U32))
                with b.if_(b.setp("ne", found, 0, type=U32)):
                    with b.if_(b.setp("ge", since_mail, MAIL_CHECK_EVERY, type=U32)):
                        with b.if_(leader):
                            self.busy_check(done, BUSY_STOP_EVERY)
                        b.shfl("idx", done, 0, dst=done)
                        b.mov(0, type=U32, dst=since_mail)
                        loop.break_if(b.setp("ne", done, 0, type=U32))
                b.mov(0, type=U32, dst=found)
                if self.instrument:
                    b.mov(b.special("clock64"), dst=sweep_t0)


__all__ = ["SmemReady", "SmemReadyKernel", "Layout", "capacity_for", "shared_bytes",
           "ERROR_SMEM_FULL", "ERROR_POOL_FULL"]
