"""GPU run-queue primitives shared by every run-queue executor (architecture §5): Embassy's raw
executor (``embassy-executor/src/raw``: ``state_atomics.rs``, ``run_queue_atomics.rs``,
``mod.rs``) ported to PTX, plus the ``spawn`` ABI and a fixed-capacity task pool.

Memory (the kernel's ``frames`` buffer)::

    frames + 0     executor state, STATE_BYTES (zeroed by the host before every run)
                   +0 error u32   +4 pool_next u32   +8 finished u32   +12 ntasks u32
                   +16 counters u64 (instrumented builds: where wake/spawn count)
    frames + 64    task record i, i < ntasks + spawn_capacity: u32 rows, 32 neighbouring
                   records interleaved row by row (``harness.futures.record_addr``), so a
                   warp's accesses to one field are one 128-byte line:
                   row 0 state      SPAWNED | RUN_QUEUED | ROOT } zeroed by the host
                   row 1 head       } run queue of *worker* i   } before every run, as
                   row 2 live       } (tasks homed there, alive) } far as the kernel uses
                   row 3 started    graph: roots spawned        } them (a 2-D memset)
                   rows 4-5 poll_fn u64  type-erased poll function (Embassy's ``poll_fn``)
                   row 6 next       run-queue link
                   row 7 home       the worker whose run queue a spawned task is pushed on
                                    (a root's is its id % workers: its state has ROOT)
                   rows 8..         the task's frame

Task references are ids (``task`` of the poll ABI); a queue link holds ``id + 1`` so that 0
is null and a zeroed buffer is an empty queue. Ids instead of pointers keep the link in the
header's reserved word, and a Treiber stack whose pop is "swap the head to null" has no ABA
problem, so 32-bit ids lose nothing.

Orderings are Embassy's: ``fetch_or``/``fetch_and`` AcqRel -> ``atom.acq_rel.gpu``; the
enqueue's ``fetch_update(SeqCst, SeqCst)`` -> ``fence.sc.gpu`` + ``atom.cas.acq_rel.gpu``
(the PTX mapping of a seq_cst read-modify-write; its first load, which only guesses the
expected value, is relaxed); ``swap(null, AcqRel)`` -> ``atom.exch.acq_rel.gpu``. Two are
weaker, with the reason at the code: the despawn (relaxed: records are not reused within a
run) and the fused spawn-and-dequeue of a root (acquire).

The roots' first poll. A worker spawns each of its roots and polls it at once, with its
arguments in registers (``start_<root>``): Embassy's spawn (enqueue) followed by a
``dequeue_all`` whose batch is that root, fused. The task is marked SPAWNED by an
``atom.exch`` (acq_rel) *before* the poll, so a wake during the poll sees it spawned and
queues it (the same RMW-on-state ordering as the dequeue's ``fetch_and``); a root that is
Ready at once costs that exchange and the despawn -- no queue traffic, no frame, no header
row. ``live`` is touched only by its own worker (a task is spawned by, and polled on, the
thread it is homed at): a register when no task can spawn, else plain loads and stores of
the worker's row (``spawn`` counts there).

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
``block_on``: a thread leaves its loop alone; a warp (``vote.sync``) or a block (``barrier.red``)
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

from harness.errors import PollbenchError
from harness.futures import (
    READY, SPAWN_FAILED, FutureDef, ROW_BYTES, declare_spawn, declare_wake, record_addr, row_mem,
    st_row, write_task_args,
)
from harness.ptx import Builder
from harness.ptx.types import B32, U32, U64

from executors.base import (  # noqa: F401 (stop_requested, StopPoller re-exported)
    COUNTER_FIELDS, ERROR_POOL_FULL, KERNEL_PARAMS, Executor, ExecutorBuild, ExecutorKernel,
    Probe, StopPoller, count_at, dispatch_poll, first_poll, stop_requested,
)

SPAWNED, RUN_QUEUED, ROOT = 1, 2, 4  # ROOT: homed at id % workers (no home row written)
STATE, Q_HEAD, Q_LIVE, STARTED, POLL_FN, NEXT, HOME = 0, 1, 2, 3, 4, 6, 7  # record rows
RQ_HEADER_ROWS = 8
ERROR, POOL_NEXT, FINISHED, NTASKS, COUNTERS = 0, 4, 8, 12, 16
STATE_BYTES = 64
INSTRUMENTED = 1  # tag bit of ``exec`` in instrumented builds: wake/spawn count then


# ------------------------------------------------------------------ addressing


def exec_base(b: Builder, exec_):
    """The ``frames`` pointer inside an ``exec`` (drops the instrumentation tag)."""
    return b.and_(exec_, ~INSTRUMENTED & 0xFFFFFFFFFFFFFFFF, type=U64)


def record(b: Builder, base, task, rows: int):
    """Address of task ``task``'s record (row ``r`` at ``+ r * ROW_BYTES``)."""
    return record_addr(b, b.add(base, STATE_BYTES, type=U64), task, rows)


def frame_of(b: Builder, rec):
    """The frame inside a record."""
    return b.add(rec, RQ_HEADER_ROWS * ROW_BYTES, type=U64)


def _thread_index(b: Builder):
    return b.global_index()


def _count(b: Builder, exec_, base, field: str, value=1) -> None:
    """In instrumented runs (``exec`` tagged), ``counters[this thread].field += value``."""
    tagged = b.setp("ne", b.and_(exec_, INSTRUMENTED, type=U64), 0, type=U64)
    with b.if_(tagged):
        counters = b.ld("global", b.add(base, COUNTERS, type=U64), U64)
        count_at(b, counters, _thread_index(b), field, value)


def _live_add(b: Builder, rec, delta: int, live="memory") -> None:
    """``live += delta`` of the worker whose record is ``rec``: in ``live`` when it is a
    register, else in the worker's row (only that worker's own thread ever changes it:
    plain load and store); ``live=None`` counts nothing (the graph executor ends on its
    ``finished`` count instead)."""
    if live is None:
        return
    if live != "memory":
        b.add(live, delta & 0xFFFFFFFF, type=U32, dst=live)
        return
    addr = row_mem(rec, Q_LIVE)
    b.st("global", addr, b.add(b.ld("global", addr, U32), delta & 0xFFFFFFFF, type=U32), type=U32)


# ------------------------------------------------ task state transitions (state_atomics)
# Every change of a record's STATE word, each with its memory ordering, written once (as
# Embassy's state_atomics.rs). Bits: SPAWNED (a live task), RUN_QUEUED (on a run queue or
# about to be), ROOT (spawned by the kernel's start, homed by its id).


def state_run_enqueue(b: Builder, rec):
    """``run_enqueue``: set RUN_QUEUED, returning the previous state. AcqRel: the release
    publishes what the waker wrote before waking; the acquire lets the waker that finds the
    task unqueued push it after everything the last poll wrote."""
    return b.atom("global", "or", row_mem(rec, STATE), RUN_QUEUED, type=B32,
                  sem="acq_rel", scope="gpu")


def state_mark_spawned(b: Builder, rec) -> None:
    """``mark_spawned``: SPAWNED | RUN_QUEUED by a release store, which publishes the
    record's poll_fn, home and frame to whoever dequeues it."""
    b.st("global", row_mem(rec, STATE), b.mov(SPAWNED | RUN_QUEUED, type=U32),
         sem="release", scope="gpu")


def state_claim_root(b: Builder, rec) -> None:
    """A root's spawn, just before its first poll: SPAWNED | ROOT by an exchange.
    Acquire: a waker that got in first (its fetch_or is earlier in the state's
    modification order, and pushed nothing) published its data before that RMW, and the
    poll must see it. No release: nothing here is read by another thread."""
    b.atom("global", "exch", row_mem(rec, STATE), b.mov(SPAWNED | ROOT, type=B32),
           type=B32, sem="acquire", scope="gpu")


def state_run_dequeue(b: Builder, rec):
    """``run_dequeue``: clear RUN_QUEUED before the poll, returning the previous state.
    AcqRel, as Embassy's: the acquire makes what wakers published before their
    ``run_enqueue`` visible to the poll; a wake after this clear finds RUN_QUEUED clear
    and queues the task again, so no wake during the poll is lost."""
    return b.atom("global", "and", row_mem(rec, STATE), ~RUN_QUEUED & 0xFFFFFFFF, type=B32,
                  sem="acq_rel", scope="gpu")


def state_despawn(b: Builder, rec) -> None:
    """``despawn``: clear SPAWNED after Ready. Relaxed, where Embassy's is AcqRel: its
    release publishes "the storage is free" to the next spawn into it, and these records
    are never reused within a run (the kernel boundary orders runs); wakers and the
    dequeue only test the bit, with no data behind it."""
    b.atom("global", "and", row_mem(rec, STATE), ~SPAWNED & 0xFFFFFFFF, type=B32,
           sem="relaxed", scope="gpu")


# ------------------------------------------------------------------ the run queue


def push(b: Builder, queue_head, task, rec):
    """``RunQueue::enqueue``: ``task.next = head; head = task`` by a CAS loop (Embassy's
    ``fetch_update(SeqCst, SeqCst)``). Returns the number of failed CASes (u32)."""
    retries = b.mov(0, type=U32)
    item = b.add(task, 1)
    # fetch_update's first load only guesses the CAS's expected value (a failed CAS
    # returns the current head): relaxed is enough; the CAS below is the SeqCst RMW.
    old = b.ld("global", queue_head, U32, sem="relaxed", scope="gpu")
    with b.loop() as lp:
        b.st("global", row_mem(rec, NEXT), old, type=U32)
        b.fence("sc", "gpu")
        seen = b.atom("global", "cas", queue_head, old, item, type=B32, sem="acq_rel", scope="gpu")
        lp.break_if(b.setp("eq", seen, old, type=B32))
        b.mov(seen, dst=old)
        b.add(retries, 1, dst=retries)
    return retries


def wake_task(b: Builder, base, task, rows: int, exec_=None) -> None:
    """``wake_task``: ``fetch_or(RUN_QUEUED)``; if it was clear and the task is spawned, push
    it onto its home worker's run queue. Counts wakes, queue ops and CAS retries when
    ``exec_`` (tagged) is given."""
    rec = record(b, base, task, rows)
    prev = state_run_enqueue(b, rec)
    flags = b.and_(prev, SPAWNED | RUN_QUEUED, type=B32)
    if exec_ is not None:
        _count(b, exec_, base, "wakes")
    with b.if_(b.setp("eq", flags, SPAWNED, type=B32)):
        home = b.reg(U32)
        root = b.setp("ne", b.and_(prev, ROOT, type=B32), 0, type=B32)
        with b.if_(root):
            b.rem(task, b.mul(b.special("nctaid.x"), b.special("ntid.x")), type=U32, dst=home)
        with b.if_(root, negate=True):
            b.ld("global", row_mem(rec, HOME), U32, dst=home)
        queue = b.add(record(b, base, home, rows), Q_HEAD * ROW_BYTES, type=U64)
        retries = push(b, queue, task, rec)
        if exec_ is not None:
            _count(b, exec_, base, "queue_ops")
            _count(b, exec_, base, "cas_retries", b.cvt(retries, U64))


def start_task(b: Builder, base, fut: FutureDef, task, home, poll_fn, args, rows: int):
    """Initialise record ``task`` for its first poll from the queue (poll_fn, home, the
    frame's arguments ``(task, args)`` and resume 0), count it live at ``home`` (the
    spawner's own worker), mark it SPAWNED | RUN_QUEUED (Embassy's ``mark_spawned``, a
    release store: it publishes the frame) and push it. Returns the failed CASes."""
    rec = record(b, base, task, rows)
    st_row(b, "global", rec, POLL_FN, poll_fn, U64)
    b.st("global", row_mem(rec, HOME), home, type=U32)
    write_task_args(b, "global", frame_of(b, rec), fut, [task, args])
    home_rec = record(b, base, home, rows)
    _live_add(b, home_rec, 1)
    state_mark_spawned(b, rec)
    return push(b, b.add(home_rec, Q_HEAD * ROW_BYTES, type=U64), task, rec)


# --------------------------------------------------------- wake and spawn .funcs


def fill_wake(w: Builder, rows: int) -> None:
    exec_ = w.param("exec")
    wake_task(w, exec_base(w, exec_), w.param("task"), rows, exec_)
    w.ret()


def fill_spawn(s: Builder, rows: int, spawn_capacity: int, fut: FutureDef) -> None:
    """The spawn ABI: claim a pool slot (``atom.add`` on ``pool_next``: the bump allocator
    is the claim, so the slot needs no CAS from 0 as Embassy's ``TaskStorage`` does), home
    it at the spawner's worker, start it. A full pool sets ERROR_POOL_FULL and returns
    SPAWN_FAILED; the spawning future decides what to do. ``fut`` is any task type: every
    task has the root signature, so its argument rows are the same for all."""
    exec_ = s.param("exec")
    base = exec_base(s, exec_)
    slot = s.atom("global", "add", s.add(base, POOL_NEXT, type=U64), 1, type=U32,
                  sem="relaxed", scope="gpu")
    with s.if_(s.setp("ge", slot, spawn_capacity, type=U32)):
        s.st("global", s.add(base, ERROR, type=U64), s.mov(ERROR_POOL_FULL, type=U32),
             sem="relaxed", scope="gpu")
        s.ret(s.mov(SPAWN_FAILED, type=U32))
    ntasks = s.ld("global", s.add(base, NTASKS, type=U64), U32)
    child = s.add(ntasks, slot)
    home = s.global_index()  # the parent is polled by its home worker: this thread
    retries = start_task(s, base, fut, child, home, s.param("poll_fn"), s.param("args"), rows)
    _count(s, exec_, base, "queue_ops")
    _count(s, exec_, base, "cas_retries", s.cvt(retries, U64))
    s.ret(child)


# -------------------------------------------------------------- the run loop


def start_roots(b: Builder, base, types: tuple, worker, nworkers, ntasks, args, rows: int,
                exec_, dispatch: str, probe: Probe, on_ready=None, live="memory") -> None:
    """Spawn roots ``worker, worker + nworkers, ...`` below ``ntasks`` onto this worker and
    give each its first poll at once (module docstring: the roots' first poll); a root
    still Pending counts in ``live`` (see ``_live_add``)."""
    root = types[0]
    i = b.mov(worker)
    me = record(b, base, worker, rows)
    with b.loop() as lp:
        lp.break_if(b.setp("ge", i, ntasks))
        rec = record(b, base, i, rows)
        state_claim_root(b, rec)
        probe.begin()
        status = first_poll(b, root, rec, frame_of(b, rec), i, exec_, [i, args], dispatch,
                            keep_poll_fn=dispatch == "indirect" or len(types) > 1,
                            poll_fn_row=POLL_FN)
        probe.poll_done(status)
        ready = b.setp("eq", status, READY)
        with b.if_(ready):
            state_despawn(b, rec)
            if on_ready is not None:
                on_ready()
        with b.if_(ready, negate=True):
            _live_add(b, me, 1, live)
        b.add(i, nworkers, dst=i)


def live_tasks(b: Builder, rec):
    """This worker's live count (its own row: a plain load)."""
    return b.ld("global", row_mem(rec, Q_LIVE), U32)


def run_batch(b: Builder, base, rec, types: tuple, exec_, rows: int, dispatch: str,
              probe: Probe, on_ready=None, live="memory"):
    """``dequeue_all`` + the poll closure: swap this worker's head to null, then walk the
    detached batch, reading each ``next`` before polling (a task that re-enqueues itself
    overwrites it), clearing RUN_QUEUED (``run_dequeue``) and polling only SPAWNED tasks;
    on Ready, ``despawn`` and ``live -= 1``. Returns the swapped head (0: the queue was
    empty) so the caller can tell idle from busy."""
    head = b.atom("global", "exch", row_mem(rec, Q_HEAD), b.mov(0, type=U32),
                  type=B32, sem="acq_rel", scope="gpu")
    probe.add("queue_ops")
    with b.if_(b.setp("ne", head, 0, type=B32)):
        t = b.sub(head, 1, type=U32)
        with b.loop() as walk:
            trec = record(b, base, t, rows)
            nxt = b.ld("global", row_mem(trec, NEXT), U32)
            prev = state_run_dequeue(b, trec)
            spawned = b.setp("ne", b.and_(prev, SPAWNED, type=B32), 0, type=B32)
            with b.if_(spawned):
                probe.begin()
                status = dispatch_poll(b, types, trec, frame_of(b, trec), t, exec_, dispatch,
                                       poll_fn_row=POLL_FN)
                probe.poll_done(status)
                with b.if_(b.setp("eq", status, READY)):
                    state_despawn(b, trec)
                    _live_add(b, rec, -1, live)
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

    def emit_module(self, build: ExecutorBuild) -> int:
        """``wake``, ``spawn`` and the task types' polls; returns the record rows (header
        and the largest frame), which wake and spawn are written for."""
        module = build.module
        # bodies come once the record size is known: futures must see wake and spawn
        # before they are emitted, and they size the records
        w, s = declare_wake(module), declare_spawn(module)
        build.emit_polls()
        rows = RQ_HEADER_ROWS + max(t.rows for t in build.types)
        fill_wake(w, rows)
        fill_spawn(s, rows, build.spawn_capacity, build.root)
        return rows

    def emit_kernel(self, build: ExecutorBuild, dispatch: str, granularity: str,
                    instrument: bool) -> ExecutorKernel:
        root, spawns = build.root, build.spawn_capacity > 0
        name = self.kernel_name(granularity, dispatch, root, instrument)
        self.emit_loop(build, name, dispatch, instrument, granularity)
        return ExecutorKernel(name, build.layout, root.frame_size, state_bytes=STATE_BYTES,
                              spawn_capacity=build.spawn_capacity, error_offset=ERROR,
                              zeroed_rows=self.zeroed_rows(spawns))

    def zeroed_rows(self, spawns: bool) -> int:
        """Record rows to zero before a run: state and head, and live where ``spawn``
        counts in it."""
        return Q_LIVE + 1 if spawns else Q_HEAD + 1

    def emit_loop(self, build: ExecutorBuild, name: str, dispatch: str, instrument: bool,
                  granularity: str = "thread") -> None:
        """The kernel ``name``: its run loop over ``build``'s task records."""
        raise NotImplementedError

    def prologue(self, b: Builder, instrument: bool, spawns: bool):
        """Kernel entry common to every run-queue kernel: publish ``ntasks`` (for spawn, in
        kernels whose tasks may spawn) and the counters pointer (instrumented) in the
        executor state. Returns a dict of the registers the loop needs."""
        gid = b.global_index()
        frames, ntasks = b.param("frames"), b.param("ntasks")
        counters = b.param("counters")
        # Every thread stores the same values (a benign race): spawn and wake read them
        # in the same thread afterwards, so no thread waits for another.
        if spawns:
            b.st("global", b.add(frames, NTASKS, type=U64), ntasks, type=U32)
        exec_ = frames
        if instrument:
            b.st("global", b.add(frames, COUNTERS, type=U64), counters, type=U64)
            exec_ = b.or_(frames, INSTRUMENTED, type=U64)
        nworkers = b.mul(b.special("nctaid.x"), b.special("ntid.x"))
        return dict(gid=gid, base=frames, ntasks=ntasks, exec=exec_, nworkers=nworkers,
                    args=b.param("args"), stop=b.param("stop"), counters=counters)

    def prepare(self, backend, kernel: ExecutorKernel, grid, block, run) -> None:
        """Zero the executor state and the first ``zeroed_rows`` rows of every record group
        (a wake may reach a record before its worker spawns it: its state must be 0, every
        queue empty); not the frames: those are written before they are read."""
        from harness.futures import LANES

        capacity = kernel.task_capacity(run.ntasks)
        backend.zero(run.frames, kernel.state_bytes)
        backend.zero_rows(run.frames + kernel.state_bytes, LANES * kernel.stride,
                          kernel.zeroed_rows * ROW_BYTES, -(-capacity // LANES))

__all__ = ["SPAWNED", "RUN_QUEUED", "RQ_HEADER_ROWS", "STATE_BYTES", "RunQueueExecutor", "push",
           "wake_task", "start_task", "run_batch", "start_roots", "live_tasks", "record",
           "frame_of", "fill_wake", "fill_spawn",
           "exec_base", "stop_requested", "StopPoller", "finish_counters", "KERNEL_PARAMS"]
