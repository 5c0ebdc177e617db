"""GPU run-queue primitives shared by every run-queue executor (DESIGN §5): Embassy's raw
executor (``embassy-executor/src/raw``: ``state_atomics.rs``, ``run_queue_atomics.rs``,
``mod.rs``) ported to PTX, plus the ``spawn`` ABI and a fixed-capacity task pool.

Memory (the kernel's ``frames`` buffer; the host zeroes all of it before every run, see
``RunQueueExecutor.launch``)::

    frames + 0     executor state, STATE_BYTES
                   +0 error u32   +4 pool_next u32   +8 finished u32   +12 ntasks u32
                   +16 counters u64 (instrumented builds: where wake/spawn count)
    frames + 64    task slot i at  64 + i * stride,  i < ntasks + spawn_capacity
                   +0  poll_fn u64   type-erased poll function (Embassy's ``poll_fn``)
                   +8  state u32     SPAWNED | RUN_QUEUED   (the header's "reserved" word,
                   +12 next u32      run-queue link          Embassy's State + RunQueueItem)
                   +16 head u32      } run queue of *worker* i (Embassy's SyncExecutor):
                   +20 live u32      } head of its Treiber stack, tasks homed there not Ready
                   +24 home u32      the worker whose run queue this task is pushed on
                   +28 started u32   graph: worker i has spawned its roots
                   +32 frame ...

Task references are ids (``task`` of the poll ABI); a queue link holds ``id + 1`` so that 0
is null and a zeroed buffer is an empty queue. Ids instead of pointers keep the link in the
header's reserved word, and a Treiber stack whose pop is "swap the head to null" has no ABA
problem, so 32-bit ids lose nothing.

Orderings are Embassy's: ``fetch_or``/``fetch_and`` AcqRel -> ``atom.acq_rel.gpu``; the
enqueue's ``fetch_update(SeqCst, SeqCst)`` -> ``fence.sc.gpu`` + ``atom.cas.acq_rel.gpu``
(the PTX mapping of a seq_cst read-modify-write); ``swap(null, AcqRel)`` ->
``atom.exch.acq_rel.gpu``.

Workers. One run queue per thread. Root ``i`` is homed at thread ``i % threads``
(``run_case`` launches one thread per root, so each starts with one root); a spawned task is
homed at its spawner's thread, as an Embassy ``Spawner`` is bound to one executor. Why per
thread and not one shared queue: Embassy's dequeue takes the whole batch, so one shared queue
would hand everything to whichever thread swapped first and leave the rest spinning;
per-thread queues keep Embassy's algorithm intact (one single-threaded executor per thread,
``poll`` never reentrant), put no contended atomic on the hot path (a thread's head is
touched by itself and by wakers of its tasks only), and give each thread a termination test
of its own (its ``live`` count reaches 0: nothing it homes can run again, and only its own
tasks spawn onto it). The cost is no load balancing: spawned children run where their parent
does. The worker *granularity* (thread, warp, block) is the scope of the run loop, as for
``block_on``: a thread leaves its loop alone; a warp (``vote.sync``) or a block (``bar.red``)
iterates in lockstep and leaves when all its threads' queues are drained -- the same queues
and polls, a different synchronisation cost. (A queue shared by a warp would need a
cooperative walk of a linked batch: a different algorithm, not Embassy's.)

Wake: ``prev = fetch_or(RUN_QUEUED)``; push iff RUN_QUEUED was clear *and* SPAWNED set.
Embassy pushes whenever RUN_QUEUED was clear and filters !SPAWNED at dequeue; here a task id
can be woken before its worker has spawned it (a peer that knows its id), where Embassy's
``header.executor`` would still be None, so the push also needs SPAWNED. The dequeue filter
(``run_dequeue``: skip a task whose SPAWNED is clear) stays: it is what makes "no poll after
Ready" hold when a task is woken during the poll that returns Ready.
"""

from __future__ import annotations

from harness.futures import READY, SPAWN_FAILED, FutureDef
from harness.ptx import Builder, Module, Sym
from harness.ptx.types import B32, U32, U64

from executors.base import (  # noqa: F401 (stop_requested, StopPoller re-exported)
    COUNTER_FIELDS, ERROR_POOL_FULL, KERNEL_PARAMS, Executor, ExecutorKernel, Probe, StopPoller,
    count_at, stop_requested,
)

SPAWNED, RUN_QUEUED = 1, 2
RQ_HEADER = 32
POLL_FN, STATE, NEXT, Q_HEAD, Q_LIVE, HOME, STARTED = 0, 8, 12, 16, 20, 24, 28
ERROR, POOL_NEXT, FINISHED, NTASKS, COUNTERS = 0, 4, 8, 12, 16
STATE_BYTES = 64
INSTRUMENTED = 1  # tag bit of ``exec`` in instrumented builds: wake/spawn count then
SPAWN_PARAMS = (("task", U32), ("exec", U64), ("poll_fn", U64), ("args", U64))


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


# ------------------------------------------------------------------ addressing


def exec_base(b: Builder, exec_):
    """The ``frames`` pointer inside an ``exec`` (drops the instrumentation tag)."""
    return b.and_(exec_, ~INSTRUMENTED & 0xFFFFFFFFFFFFFFFF, type=U64)


def header_addr(b: Builder, base, task, stride: int):
    """Address of task ``task``'s slot header."""
    return b.add(b.add(base, STATE_BYTES, type=U64), b.mul(task, stride, mode="wide"), type=U64)


def _thread_index(b: Builder):
    return b.global_index()


def _count(b: Builder, exec_, base, field: str, value=1) -> None:
    """In instrumented runs (``exec`` tagged), ``counters[this thread].field += value``."""
    tagged = b.setp("ne", b.and_(exec_, INSTRUMENTED, type=U64), 0, type=U64)
    with b.if_(tagged):
        counters = b.ld("global", b.add(base, COUNTERS, type=U64), U64)
        count_at(b, counters, _thread_index(b), field, value)


# ------------------------------------------------------------------ the run queue


def push(b: Builder, queue_head, task, hdr):
    """``RunQueue::enqueue``: ``task.next = head; head = task`` by a CAS loop (Embassy's
    ``fetch_update(SeqCst, SeqCst)``). Returns the number of failed CASes (u32)."""
    retries = b.mov(0, type=U32)
    item = b.add(task, 1)
    b.fence("sc", "gpu")
    old = b.ld("global", queue_head, U32, sem="acquire", scope="gpu")
    with b.loop() as lp:
        b.st("global", b.add(hdr, NEXT, type=U64), old, type=U32)
        b.fence("sc", "gpu")
        seen = b.atom("global", "cas", queue_head, old, item, type=B32, sem="acq_rel", scope="gpu")
        lp.break_if(b.setp("eq", seen, old, type=B32))
        b.mov(seen, dst=old)
        b.add(retries, 1, dst=retries)
    return retries


def wake_task(b: Builder, base, task, stride: int, exec_=None) -> None:
    """``wake_task``: ``fetch_or(RUN_QUEUED)``; if it was clear and the task is spawned, push
    it onto its home worker's run queue. Counts wakes, queue ops and CAS retries when
    ``exec_`` (tagged) is given."""
    hdr = header_addr(b, base, task, stride)
    prev = b.atom("global", "or", b.add(hdr, STATE, type=U64), RUN_QUEUED, type=B32,
                  sem="acq_rel", scope="gpu")
    flags = b.and_(prev, SPAWNED | RUN_QUEUED, type=B32)
    if exec_ is not None:
        _count(b, exec_, base, "wakes")
    with b.if_(b.setp("eq", flags, SPAWNED, type=B32)):
        home = b.ld("global", b.add(hdr, HOME, type=U64), U32)
        queue = b.add(header_addr(b, base, home, stride), Q_HEAD, type=U64)
        retries = push(b, queue, task, hdr)
        if exec_ is not None:
            _count(b, exec_, base, "queue_ops")
            _count(b, exec_, base, "cas_retries", b.cvt(retries, U64))


def start_task(b: Builder, base, task, home, poll_fn, args, stride: int) -> None:
    """Initialise slot ``task`` (poll_fn, home, a root-signature frame ``(task, args)``,
    resume 0), count it live at ``home``, mark it SPAWNED | RUN_QUEUED (Embassy's
    ``mark_spawned``, a release store: it publishes the frame) and push it."""
    hdr = header_addr(b, base, task, stride)
    frame = b.add(hdr, RQ_HEADER, type=U64)
    b.st("global", hdr, poll_fn, type=U64)
    b.st("global", b.add(hdr, HOME, type=U64), home, type=U32)
    b.st("global", b.add(frame, 16, type=U64), task, type=U32)  # root signature: task
    b.st("global", b.add(frame, 24, type=U64), args, type=U64)  # then args
    b.st("global", frame, b.mov(0, type=U32))  # resume = 0
    rec = header_addr(b, base, home, stride)
    b.red("global", "add", b.add(rec, Q_LIVE, type=U64), b.mov(1, type=U32), sem="relaxed",
          scope="gpu")
    b.st("global", b.add(hdr, STATE, type=U64), b.mov(SPAWNED | RUN_QUEUED, type=U32),
         sem="release", scope="gpu")
    return push(b, b.add(rec, Q_HEAD, type=U64), task, hdr)


# --------------------------------------------------------- wake and spawn .funcs


def define_wake(module: Module):
    """Declare ``wake(task, exec)``; returns its builder (the body comes once the stride is
    known: futures must see ``wake`` before they are emitted, and they size the stride)."""
    return Builder.func(module, "wake", [("task", U32), ("exec", U64)])


def define_spawn(module: Module):
    """Declare ``spawn(task, exec, poll_fn, args) -> u32`` (body filled in later)."""
    return Builder.func(module, "spawn", SPAWN_PARAMS, ret=U32)


def fill_wake(w: Builder, stride: int) -> None:
    exec_ = w.param("exec")
    wake_task(w, exec_base(w, exec_), w.param("task"), stride, exec_)
    w.ret()


def fill_spawn(s: Builder, stride: int, spawn_capacity: int) -> None:
    """The spawn ABI: claim a pool slot (``atom.add`` on ``pool_next``: the bump allocator
    is the claim, so the slot needs no CAS from 0 as Embassy's ``TaskStorage`` does), home
    it at the spawner's worker, start it. A full pool sets ERROR_POOL_FULL and returns
    SPAWN_FAILED; the spawning future decides what to do."""
    exec_, parent = s.param("exec"), s.param("task")
    base = exec_base(s, exec_)
    slot = s.atom("global", "add", s.add(base, POOL_NEXT, type=U64), 1, type=U32,
                  sem="relaxed", scope="gpu")
    with s.if_(s.setp("ge", slot, spawn_capacity, type=U32)):
        s.st("global", s.add(base, ERROR, type=U64), s.mov(ERROR_POOL_FULL, type=U32),
             sem="relaxed", scope="gpu")
        s.ret(s.mov(SPAWN_FAILED, type=U32))
    ntasks = s.ld("global", s.add(base, NTASKS, type=U64), U32)
    child = s.add(ntasks, slot)
    home = s.ld("global", s.add(header_addr(s, base, parent, stride), HOME, type=U64), U32)
    retries = start_task(s, base, child, home, s.param("poll_fn"), s.param("args"), stride)
    _count(s, exec_, base, "queue_ops")
    _count(s, exec_, base, "cas_retries", s.cvt(retries, U64))
    s.ret(child)


# -------------------------------------------------------------- the run loop


def dispatch_poll(b: Builder, types: tuple, hdr, task, exec_, dispatch: str):
    """Poll the task at ``hdr``: ``indirect`` calls through its ``poll_fn`` (Embassy's
    type-erased call); ``direct`` compares ``poll_fn`` with each known task type's address
    and calls that type's poll function directly (monomorphised dispatch)."""
    frame = b.add(hdr, RQ_HEADER, type=U64)
    proto = b.module.functions[types[0].poll_name]
    if dispatch == "indirect":
        return b.call(b.ld("global", hdr, U64), [frame, task, exec_], proto=proto)
    if len(types) == 1:
        return b.call(types[0].poll_name, [frame, task, exec_])
    fptr = b.ld("global", hdr, U64)
    status = b.mov(0, type=U32)
    done = b.new_label("polled")
    for t in types:
        with b.if_(b.setp("eq", fptr, b.mov(Sym(t.poll_name)), type=U64)):
            b.mov(b.call(t.poll_name, [frame, task, exec_]), dst=status)
            b.bra(done)
    b.trap()  # a poll_fn of no known type: a corrupted header
    b.place(done)
    return status


def spawn_roots(b: Builder, base, types: tuple, worker, nworkers, ntasks, args, stride: int,
                probe: Probe) -> None:
    """Spawn roots ``worker, worker + nworkers, ...`` below ``ntasks`` onto this worker."""
    i = b.mov(worker)
    root_fn = b.mov(Sym(types[0].poll_name))
    with b.loop() as lp:
        lp.break_if(b.setp("ge", i, ntasks))
        retries = start_task(b, base, i, worker, root_fn, args, stride)
        probe.add("queue_ops")
        probe.add("cas_retries", retries)
        b.add(i, nworkers, dst=i)


def run_batch(b: Builder, base, rec, types: tuple, exec_, stride: int, dispatch: str,
              probe: Probe, on_ready=None):
    """``dequeue_all`` + the poll closure: swap this worker's head to null, then walk the
    detached batch, reading each ``next`` before polling (a task that re-enqueues itself
    overwrites it), clearing RUN_QUEUED (``run_dequeue``) and polling only SPAWNED tasks;
    on Ready, ``despawn`` and ``live -= 1``. Returns the swapped head (0: the queue was
    empty) so the caller can tell idle from busy."""
    head = b.atom("global", "exch", b.add(rec, Q_HEAD, type=U64), b.mov(0, type=U32),
                  type=B32, sem="acq_rel", scope="gpu")
    probe.add("queue_ops")
    with b.if_(b.setp("ne", head, 0, type=B32)):
        t = b.sub(head, 1, type=U32)
        with b.loop() as walk:
            hdr = header_addr(b, base, t, stride)
            nxt = b.ld("global", b.add(hdr, NEXT, type=U64), U32)
            prev = b.atom("global", "and", b.add(hdr, STATE, type=U64), ~RUN_QUEUED & 0xFFFFFFFF,
                          type=B32, sem="acq_rel", scope="gpu")
            spawned = b.setp("ne", b.and_(prev, SPAWNED, type=B32), 0, type=B32)
            with b.if_(spawned):
                probe.begin()
                status = dispatch_poll(b, types, hdr, t, exec_, dispatch)
                probe.poll_done(status)
                with b.if_(b.setp("eq", status, READY)):
                    b.atom("global", "and", b.add(hdr, STATE, type=U64), ~SPAWNED & 0xFFFFFFFF,
                           type=B32, sem="acq_rel", scope="gpu")
                    b.red("global", "add", b.add(rec, Q_LIVE, type=U64),
                          b.mov(0xFFFFFFFF, type=U32), sem="relaxed", scope="gpu")
                    if on_ready is not None:
                        on_ready()
            walk.break_if(b.setp("eq", nxt, 0))
            b.sub(nxt, 1, type=U32, dst=t)
    return head


def finish_counters(b: Builder, probe: Probe, counters, gid) -> None:
    """Add the run loop's counters into the thread's record. ``Probe.finish`` stores, which
    would erase what ``wake``/``spawn`` counted there with ``count_at`` and what earlier
    rounds of a graph counted; start_ns keeps the first value, end_ns the last."""
    if not probe.enabled:
        return
    regs = probe.regs
    b.sub(b.special("clock64"), probe.t0, type=U64, dst=regs["total_cycles"])
    with b.if_(b.setp("ne", counters, 0, type=U64)):
        rec = b.add(counters, b.mul(gid, 8 * len(COUNTER_FIELDS), mode="wide"), type=U64)
        for k, f in enumerate(COUNTER_FIELDS):
            addr = b.add(rec, 8 * k, type=U64)
            if f == "smid":
                b.st("global", addr, b.cvt(b.special("smid"), U64), type=U64)
            elif f == "start_ns":
                b.atom("global", "cas", addr, b.mov(0, type=U64), regs[f], type="b64")
            elif f == "end_ns":
                b.red("global", "max", addr, b.special("globaltimer"), type=U64)
            else:
                b.red("global", "add", addr, regs[f], type=U64)


# ------------------------------------------------------------------- executors


class RunQueueExecutor(Executor):
    """Base of the Embassy-style executors: builds wake/spawn and the task pool layout;
    subclasses emit the kernel with ``emit_kernel``.

    ``poll_gap_bound``: between a task's wake and its next poll, no other task of its
    worker is polled more than this many times (the conformance suite holds each executor
    to it). Embassy's batches give 2: a task woken during batch k is polled in batch k+1;
    any other task is polled at most once in the rest of batch k and once in batch k+1.
    """

    supports_spawn = True
    granularities = ("thread",)
    poll_gap_bound = 2

    def kernel_name(self, granularity: str, dispatch: str, root: FutureDef,
                    instrument: bool) -> str:
        return f"{self.name}_{granularity}_{dispatch}_{root.name}" + ("_instr" if instrument else "")

    def build(self, module: Module, root: FutureDef, dispatch: str = "direct",
              granularity: str = "thread", instrument: bool = False,
              tasks: tuple = (), spawn_capacity: int = 0) -> ExecutorKernel:
        self.check(dispatch, granularity)
        types = (root,) + tuple(t for t in tasks if t is not root)
        layout = getattr(module, "_runqueue_layout", None)
        if layout is None:
            w, s = define_wake(module), define_spawn(module)
            for t in types:
                t.emit(module)
            stride = RQ_HEADER + _align(max(t.frame_size for t in types), 16)
            fill_wake(w, stride)
            fill_spawn(s, stride, spawn_capacity)
            layout = module._runqueue_layout = (stride, spawn_capacity, tuple(t.name for t in types))
        elif layout[1:] != (spawn_capacity, tuple(t.name for t in types)):
            raise ValueError("one module holds one task pool layout: rebuild in a new module")
        stride = layout[0]
        name = self.kernel_name(granularity, dispatch, root, instrument)
        self.emit_kernel(module, name, types, stride, dispatch, instrument, granularity)
        return ExecutorKernel(name, stride, root.frame_size, state_bytes=STATE_BYTES,
                              spawn_capacity=spawn_capacity, error_offset=ERROR)

    def emit_kernel(self, module, name, types, stride, dispatch, instrument,
                    granularity="thread") -> None:
        raise NotImplementedError

    def prologue(self, b: Builder, instrument: bool):
        """Kernel entry common to every run-queue kernel: publish ``ntasks`` (and the
        counters pointer) in the executor state for spawn/wake. Returns a dict of the
        registers the loop needs."""
        gid = b.global_index()
        frames, ntasks = b.param("frames"), b.param("ntasks")
        counters = b.param("counters")
        # Every thread stores the same values (a benign race): spawn and wake read them
        # in the same thread afterwards, so no thread waits for another.
        b.st("global", b.add(frames, NTASKS, type=U64), ntasks, type=U32)
        exec_ = frames
        if instrument:
            b.st("global", b.add(frames, COUNTERS, type=U64), counters, type=U64)
            exec_ = b.or_(frames, INSTRUMENTED, type=U64)
        nworkers = b.mul(b.special("nctaid.x"), b.special("ntid.x"))
        return dict(gid=gid, base=frames, ntasks=ntasks, exec=exec_, nworkers=nworkers,
                    args=b.param("args"), stop=b.param("stop"), counters=counters)

    def launch(self, backend, kernel: ExecutorKernel, grid, block, args, checked: bool = False):
        """Zero the state *and every slot* (headers must start with state 0 and empty
        queues: a wake may reach a slot before its worker spawns it), then launch."""
        self.zero_pool(backend, kernel, args)
        return backend.launch(kernel.name, grid, block, args, checked=checked)

    def enqueue(self, backend, kernel: ExecutorKernel, grid, block, args) -> None:
        """The timed form of ``launch``: the same zeroing, queued, then the kernel."""
        self.zero_pool(backend, kernel, args)
        backend.enqueue(kernel.name, grid, block, args)

    @staticmethod
    def zero_pool(backend, kernel: ExecutorKernel, args) -> None:
        n = int(args[1])
        capacity = kernel.capacity if kernel.capacity is not None else n + kernel.spawn_capacity
        backend.zero(args[0], kernel.state_bytes + capacity * kernel.stride)


__all__ = ["SPAWNED", "RUN_QUEUED", "RQ_HEADER", "STATE_BYTES", "RunQueueExecutor", "push",
           "wake_task", "start_task", "run_batch", "dispatch_poll", "spawn_roots",
           "define_wake", "define_spawn", "fill_wake", "fill_spawn", "header_addr",
           "exec_base", "stop_requested", "StopPoller", "finish_counters", "KERNEL_PARAMS"]
