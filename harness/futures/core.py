"""Rust's Future/poll model lowered to PTX state machines (architecture §4), at zero cost when
nothing suspends.

A ``FutureDef`` is a future *type*. Its poll body is written once in the async-fn DSL
(``FnBuilder``) and lowered the way rustc + LLVM lower an ``async fn`` whose callees are
inlined:

- **Children are inlined.** ``f.await_(child(...))`` writes the child's poll body into the
  parent's code (monomorphised all the way down); a child's arguments and output are
  registers. Sequential awaits share the task's one flat state machine: a suspension deep
  inside a child resumes straight at that child's code, with one dispatch per poll. Only
  the children of ``join``/``select``, which are polled side by side, keep a resume index of
  their own (a *slot*, below).
- **Slots live in registers.** Arguments, declared locals (``f.local``), the resume indexes
  of join/select children and their outputs are *slots*: one register each within a poll.
  A future that completes without suspending touches no frame memory at all.
- **The frame is written only on the Pending path.** At each suspension the lowering
  stores the slots that are live at the state it resumes at *and* may have changed since
  they were last stored (a liveness and a "dirty" dataflow over the emitted code); on
  resume it loads the slots live there. A register live across a suspension that is not a
  slot is a build error.
- **Frames coalesce.** A frame is rows of one u32 per task, and the frames of 32
  neighbouring tasks are interleaved row by row (AoSoA, as the hardware interleaves local
  memory): row ``r`` of task ``t`` is at ``group(t) + r * ROW_BYTES + (t % 32) * 4``, so a
  warp's 32 accesses to one slot are one 128-byte line. A u64 slot takes two rows.
  The executor passes ``frame = group(t) + (t % 32) * 4`` and the lowering addresses
  ``[frame + r * 128]``. Row 0 is the resume index, then the root's arguments.

Poll ABI (one pair of ``.func``s per task type)::

    poll_<name>(frame u64, task u32, exec u64) -> u32        resume: reads row 0
    start_<name>(frame u64, task u32, exec u64, args...) -> u32   the first poll

``start_<name>`` is the optimistic first poll: the arguments come in registers and the
frame is written only if it returns Pending. A task whose first poll comes from a queue
(a spawned task) has its arguments written to its frame with resume 0 by the spawner and
is polled with ``poll_<name>``. Both return ``READY``/``PENDING``; the waker is ``(task,
exec)``: futures never know their executor and call the ``wake`` it supplies.

An executor whose tasks never leave the thread that polls them (``block_on`` inline) uses
``RegisterTask``: the poll body is written into its run loop and the frame *is* registers,
as LLVM's SROA keeps a pinned local future in registers after inlining ``block_on``.

Frame space: the executor says where its frames live when it emits a future
(``fut.emit(module, space)``): ``global``, or ``shared`` for block-local ``!Send`` tasks,
where the u64 ``frame`` argument carries the zero-extended shared-window offset and rows are
``ld/st.shared``. One executor per module (``declare_wake`` refuses a second), so every
poll function of a module has its executor's frame space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import PollbenchError
from harness.ptx import Builder, Module, Reg, Sym
from harness.ptx.ir import Instr, Label, LabelDef, Mem, Vec
from harness.ptx.types import U32, U64, PtxType

PENDING, READY = 0, 1
SPAWN_FAILED = 0xFFFFFFFF  # spawn's result when the executor's task pool is full
LANES = 32  # tasks per frame group: a warp's frames interleave row by row
ROW_BYTES = 4 * LANES  # one u32 row of a group
RESUME_ROW = 0
# ``exec`` is the executor's context word, opaque to futures and handed back to ``wake`` and
# ``spawn`` (the data pointer of Rust's RawWaker): run queues pass their frames base (tagged
# when instrumented), smem_ready its counters pointer, block_on its frames base.
POLL_PARAMS = (("frame", U64), ("task", U32), ("exec", U64))
# The executor's side of the ABI, called from polls: a Waker's vtable call, and spawning
# a task (its id, or SPAWN_FAILED). One definition: every executor declares them from here.
WAKE_PARAMS = (("task", U32), ("exec", U64))
SPAWN_PARAMS = WAKE_PARAMS + (("poll_fn", U64), ("args", U64))
FRAME_SPACES = ("global", "shared")
ROOT_PARAMS = (("task", U32), ("args", U64))  # every task's signature (spawn, roots)


class FutureBuildError(PollbenchError):
    """An async fn that cannot be lowered (e.g. a register live across an await)."""


def _rows(t: PtxType) -> int:
    if t.bits == 32:
        return 1
    if t.bits == 64:
        return 2
    raise FutureBuildError(f"a frame slot holds a 32- or 64-bit value, not .{t.name}")


def group_bytes(rows: int) -> int:
    """Bytes of one group of ``LANES`` task records of ``rows`` rows."""
    return rows * ROW_BYTES


def records_bytes(rows: int, count: int) -> int:
    """Bytes of ``count`` task records of ``rows`` rows (whole groups)."""
    return -(-count // LANES) * group_bytes(rows)


def record_addr(b: Builder, base, index, rows: int, addr_type=U64):
    """Address of record ``index`` in an array of ``rows``-row records at ``base``: its
    group, then its lane (``base + (i / 32) * rows * 128 + (i % 32) * 4``). Row ``r`` of the
    record is at ``+ r * ROW_BYTES``."""
    group = b.shr(index, 5, type=U32)
    lane = b.and_(index, LANES - 1, type=U32)
    if addr_type.bits == 32:
        off = b.mad(group, group_bytes(rows), b.shl(lane, 2, type=U32), type=U32)
        return b.add(base, off, type=U32)
    off = b.mad(group, group_bytes(rows), b.cvt(b.shl(lane, 2, type=U32), U64), mode="wide")
    return b.add(base, off, type=U64)


def row_mem(addr, row: int) -> Mem:
    """The memory operand of row ``row`` of the record at ``addr``."""
    return Mem(addr, row * ROW_BYTES)


def st_row(b: Builder, space: str, addr, row: int, value, t: PtxType | None = None) -> None:
    """Store ``value`` (32 or 64 bits) in row ``row`` (and ``row + 1``) of a record."""
    t = t or b.infer(value)
    if isinstance(value, int):
        value = b.mov(value, type=t)
    if _rows(t) == 1:
        b.st(space, row_mem(addr, row), value, type=t)
        return
    bits = value if t.kind in "ub" else b.mov(value, type=U64)
    b.st(space, row_mem(addr, row), b.cvt(bits, U32), type=U32)
    b.st(space, row_mem(addr, row + 1), b.cvt(b.shr(bits, 32, type=U64), U32), type=U32)


def ld_row(b: Builder, space: str, addr, row: int, t: PtxType, dst=None) -> Reg:
    """Load a 32- or 64-bit value from row ``row`` (and ``row + 1``) of a record."""
    if _rows(t) == 1:
        return b.ld(space, row_mem(addr, row), t, dst=dst)
    lo = b.cvt(b.ld(space, row_mem(addr, row), U32), U64)
    hi = b.cvt(b.ld(space, row_mem(addr, row + 1), U32), U64)
    word = b.shl(hi, 32, type=U64)
    if t.kind in "ub":
        return b.or_(word, lo, type=U64, dst=dst)
    return b.mov(b.or_(word, lo, type=U64), type=t, dst=dst)


@dataclass
class FutureDef:
    """A future type: its arguments, output, frame rows and poll functions."""

    name: str
    params: tuple = ()  # (name, PtxType)
    output: PtxType | None = None
    rows: int = 0  # frame rows per task (set when its poll function is emitted)
    states: int = 1  # resume states of the task's flat state machine
    slots: dict = field(default_factory=dict)  # qualified slot name -> (row, type)
    _layouts: dict = field(default_factory=dict, repr=False, compare=False)  # space -> rows

    @property
    def poll_name(self) -> str:
        return f"poll_{self.name}"

    @property
    def start_name(self) -> str:
        return f"start_{self.name}"

    @property
    def frame_size(self) -> int:
        """Frame bytes per task (``rows`` u32 rows)."""
        return 4 * self.rows

    def arg_row(self, name: str) -> int:
        """The frame row of argument ``name`` of a task of this type."""
        row = RESUME_ROW + 1
        for pname, t in self.params:
            if pname == name:
                return row
            row += _rows(t)
        raise FutureBuildError(f"{self.name} has no argument {name!r}")

    def __call__(self, *args) -> "FutureCall":
        if len(args) != len(self.params):
            raise FutureBuildError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        return FutureCall(self, tuple(args))

    def emit(self, module: Module, space: str = "global") -> None:
        """Add ``poll_<name>`` (the resume entry, frames in ``space``) to ``module`` once."""
        build_poll(module, self, first=False, space=space)

    def emit_start(self, module: Module, space: str = "global") -> None:
        """Add ``start_<name>`` (the first poll, arguments in registers) to ``module`` once."""
        build_poll(module, self, first=True, space=space)

    def frame_rows(self, space: str = "global") -> int:
        """Frame rows per task with frames in ``space``, before any executor emits this
        future (an executor sizes its records, and so its ``wake``, from them). The layout
        is the lowering's own result (the slots live across a suspension), so this lowers
        the body once, into a module of its own whose ``wake`` and ``spawn`` do nothing."""
        if space not in self._layouts:
            m = Module()
            declare_wake(m).ret()
            sp = declare_spawn(m)
            sp.ret(sp.mov(SPAWN_FAILED, type=U32))
            build_poll(m, self, first=False, space=space)
            self._layouts[space] = self.rows
        return self._layouts[space]

    def lower(self, f: "FnBuilder") -> None:
        """Write the poll body (its states included) with ``f``."""
        raise NotImplementedError


@dataclass(frozen=True)
class FutureCall:
    """A future value: a type applied to arguments (what ``.await`` consumes)."""

    fut: FutureDef
    args: tuple


def declare_wake(module: Module) -> Builder:
    """Start the executor's ``wake(task, exec)`` in ``module``: its builder, for the body."""
    if "wake" in module.functions:
        raise PollbenchError("this module already has a wake: one executor per module")
    return Builder.func(module, "wake", WAKE_PARAMS)


def declare_spawn(module: Module) -> Builder:
    """Start the executor's ``spawn(task, exec, poll_fn, args) -> u32`` in ``module``."""
    if "spawn" in module.functions:
        raise PollbenchError("this module already has a spawn: one executor per module")
    return Builder.func(module, "spawn", SPAWN_PARAMS, ret=U32)


def is_noop_wake(module: Module) -> bool:
    """Whether ``module``'s ``wake`` does nothing (its body is one ``ret``)."""
    w = module.functions.get("wake")
    return (w is not None and w.kind == "func"
            and [i.op for i in w.body if isinstance(i, Instr)] == ["ret"])


# --------------------------------------------------------------------- placeholders


@dataclass
class _Spill:
    """Store the dirty slots live at state ``k`` (replaced once the body is complete).

    Not guarded when the suspension is (``with f.when(p): f.pending()``): storing a live
    slot's current value is harmless on the path that goes on (the frame then holds what
    the register holds, and the slot stays dirty), and guarded stores cost registers
    (ptxas, sm_90: ping_pong's embassy kernel 78 -> 110)."""

    state: int


@dataclass
class _Reload:
    """Load the slots live at state ``k``."""

    state: int


@dataclass
class _Init:
    """Define every slot that is not an argument of the task (first poll only): a slot
    stored before it is ever set must not read an undefined register."""


@dataclass
class Slot:
    """A value that may live across a suspension: a register within a poll, frame rows
    across polls."""

    name: str
    type: PtxType
    reg: Reg
    row: int
    is_arg: bool = False


# ----------------------------------------------------------------- one emission


class PollGen:
    """One emission of a task's poll body into one function: its slots, its flat state
    machine, and the spill/reload code written once the body is complete.

    ``frame`` is the frame address register (``None``: a ``RegisterTask``, whose frame is
    registers); ``first``: this is the first poll (arguments already in registers)."""

    def __init__(self, module: Module, fn, root: FutureDef, frame: Reg | None, task: Reg,
                 exec_: Reg, first: bool, space: str):
        self.module, self.fn, self.root = module, fn, root
        self.frame, self.task, self.exec = frame, task, exec_
        self.first, self.space = first, space
        self.slots: list[Slot] = []
        self.next_row = RESUME_ROW + 1
        self.segment = 0
        self.def_segment: dict[str, int] = {}
        self.exempt: set[str] = {r.name for r in (frame, task, exec_) if r is not None}
        self.states: list[Label] = []  # the task's flat states; 0 is the start
        self._names: dict[str, int] = {}

    def new_slot(self, name: str, t: PtxType, is_arg: bool = False) -> Slot:
        n = self._names.get(name, 0)
        self._names[name] = n + 1
        qual = name if n == 0 else f"{name}#{n}"
        b = Builder(self.module, self.fn)
        reg = b.reg(t, hint="s_" + re.sub(r"\W", "_", qual))
        s = Slot(qual, t, reg, self.next_row, is_arg)
        self.next_row += _rows(t)
        self.slots.append(s)
        self.exempt.add(reg.name)
        return s

    def bump(self) -> None:
        """A new segment: registers of earlier code may not be used after this point."""
        self.segment += 1

    # --------------------------------------------------------------- spill/reload

    def _scratch(self, write) -> list:
        """Instructions ``write(b)`` emits, taken out of the function body."""
        body = self.fn.body
        self.fn.body = []
        try:
            write(Builder(self.module, self.fn))
            return self.fn.body
        finally:
            self.fn.body = body

    def finish(self) -> None:
        """Replace the placeholders: liveness of every register and "dirty" slots over the
        emitted code decide what each suspension stores and each resume loads."""
        live_at, dirty_at = _analyse(self)
        # Frame rows only for what can be in the frame: the task's arguments (a spawner
        # writes them) and the slots live at some resume point. A slot that never crosses
        # a suspension stays a register and takes no row.
        resident = set().union(*live_at) if live_at else set()
        self.next_row = RESUME_ROW + 1
        for s in self.slots:
            if s.is_arg or s.reg.name in resident:
                s.row = self.next_row
                self.next_row += _rows(s.type)
            else:
                s.row = None
        slot_of = {s.reg.name: s for s in self.slots}
        out = []
        for i, item in enumerate(self.fn.body):
            if isinstance(item, _Spill):
                keep = [slot_of[n] for n in live_at[item.state] & dirty_at[i] if n in slot_of]
                keep.sort(key=lambda s: s.row)
                out += self._scratch(lambda b: [st_row(b, self.space, self.frame, s.row, s.reg, s.type)
                                                 for s in keep])
            elif isinstance(item, _Reload):
                load = sorted((slot_of[n] for n in live_at[item.state] if n in slot_of),
                              key=lambda s: s.row)
                out += self._scratch(lambda b: [ld_row(b, self.space, self.frame, s.row, s.type,
                                                       dst=s.reg) for s in load])
            elif isinstance(item, _Init):
                out += self._scratch(lambda b: [b.mov(0, type=s.type, dst=s.reg)
                                                for s in self.slots if not s.is_arg])
            else:
                out.append(item)
        self.fn.body = out


def _regs_used(item) -> list:
    if not isinstance(item, Instr):
        return []
    used = []
    for s in item.srcs:
        if isinstance(s, Reg):
            used.append(s.name)
        elif isinstance(s, Mem) and isinstance(s.base, Reg):
            used.append(s.base.name)
        elif isinstance(s, Vec):
            used += [r.name for r in s.regs if isinstance(r, Reg)]
    if item.pred is not None:
        used.append(item.pred[0].name)
    return used


def _regs_defined(item) -> list:
    if not isinstance(item, Instr) or item.dst is None:
        return []
    d = item.dst
    return [r.name for r in d.regs] if isinstance(d, Vec) else [d.name] if isinstance(d, Reg) else []


def _analyse(gen: PollGen):
    """Liveness (backward) of every register and "may be dirty" (forward) of slots over
    ``gen.fn.body``. Returns ``live_at[k]`` (registers live at state ``k``'s label) and
    ``dirty_at[i]`` (slots that may differ from their frame rows before item ``i``).

    A spill at state ``k`` *uses* every slot live at ``k``: a slot stored there must be in
    its register, so a resume that can reach the spill without setting it reloads it."""
    body = gen.fn.body
    n = len(body)
    labels = {it.label.name: i for i, it in enumerate(body) if isinstance(it, LabelDef)}
    state_index = [labels[lbl.name] for lbl in gen.states]
    slots = {s.reg.name for s in gen.slots}
    non_args = {s.reg.name for s in gen.slots if not s.is_arg}

    succ = []
    for i, it in enumerate(body):
        nxt = [i + 1] if i + 1 < n else []
        if isinstance(it, Instr):
            if it.op == "bra":
                tgt = [labels[it.srcs[0].name]] if it.srcs[0].name in labels else []
                nxt = tgt + (nxt if it.pred is not None else [])
            elif it.op == "brx.idx":
                tgt = [labels[t.name] for t in it.extra["targets"] if t.name in labels]
                nxt = tgt + (nxt if it.pred is not None else [])
            elif it.op in ("ret", "exit", "trap") and it.pred is None:
                nxt = []
        succ.append(nxt)
    uses = [set(_regs_used(it)) for it in body]
    # A guarded definition kills a temporary (the builder defines and uses a temporary
    # under one guard), but not a slot: a slot set under a guard keeps its old value when
    # the guard is false, so that value stays live.
    kills = [set(_regs_defined(it)) - (slots if it.pred is not None else set())
             if isinstance(it, Instr) else set() for it in body]
    for i, it in enumerate(body):
        if isinstance(it, _Reload):
            kills[i] = set(slots)
        elif isinstance(it, _Init):
            kills[i] = set(non_args)

    live_in = [set() for _ in range(n)]
    changed = True
    while changed:
        changed = False
        for i in range(n - 1, -1, -1):
            out = set()
            for s in succ[i]:
                out |= live_in[s]
            use = uses[i]
            if isinstance(body[i], _Spill):
                use = live_in[state_index[body[i].state]] & slots
            new = (out - kills[i]) | use
            if new != live_in[i]:
                live_in[i] = new
                changed = True
    live_at = [live_in[j] for j in state_index]
    for k, regs in enumerate(live_at):
        stray = sorted(r for r in regs - slots - gen.exempt)
        if stray:
            raise FutureBuildError(
                f"in {gen.root.name}: register(s) {', '.join('%' + r for r in stray)} live "
                f"across suspension point {k} and not in the frame; keep such values in "
                f"frame locals (f.local / f.set / f.get)")

    preds = [[] for _ in range(n)]
    for i, ss in enumerate(succ):
        for s in ss:
            preds[s].append(i)
    dirty_in = [set() for _ in range(n)]
    dirty_out = [None] * n
    entry = {s.reg.name for s in gen.slots if s.is_arg} if gen.first else set()
    changed = True
    while changed:
        changed = False
        for i in range(n):
            d = set(entry) if i == 0 else set()
            for p in preds[i]:
                if dirty_out[p] is not None:
                    d |= dirty_out[p]
            dirty_in[i] = d
            it = body[i]
            if isinstance(it, _Reload):
                o = d - slots
            elif isinstance(it, _Init):
                o = d | non_args
            else:
                o = d | (set(_regs_defined(it)) & slots)
            if o != dirty_out[i]:
                dirty_out[i] = o
                changed = True
    return live_at, dirty_in


# ------------------------------------------------------------- suspension contexts


class _TaskCtx:
    """The task's flat state machine: a suspension stores the live dirty slots and the
    resume index, then returns Pending to the executor."""

    def __init__(self, gen: PollGen, pending):
        self.gen = gen
        self._pending = pending  # emits "return Pending" (a .func ret, or status + branch)

    @property
    def labels(self) -> list:
        return self.gen.states

    def state(self, label: Label) -> int:
        self.gen.states.append(label)
        return len(self.gen.states) - 1

    def suspend(self, f: "FnBuilder", k: int) -> None:
        gen = self.gen
        if gen.frame is None:  # a RegisterTask: the resume index is a register
            f.mov(k, type=U32, dst=gen.resume)
        else:
            gen.fn.body.append(_Spill(k))
            f.st(gen.space, row_mem(gen.frame, RESUME_ROW), f.mov(k, type=U32), type=U32)
        self._pending(f)


class _ChildCtx:
    """The state machine of one join/select child: its resume index is a slot; a
    suspension sets it and branches to the code after the child (the parent goes on)."""

    def __init__(self, gen: PollGen, name: str, after: Label):
        self.gen = gen
        self.resume = gen.new_slot(f"{name}.resume", U32)
        self.labels: list[Label] = []
        self.after = after

    def state(self, label: Label) -> int:
        self.labels.append(label)
        return len(self.labels) - 1

    def suspend(self, f: "FnBuilder", k: int) -> None:
        f.mov(k, type=U32, dst=self.resume.reg)
        f.bra(self.after)


# ------------------------------------------------------------------- the DSL builder


class FnBuilder(Builder):
    """The builder an async fn body is written with: a ``Builder`` plus ``await_``,
    frame-resident locals, and a check that no register lives across an await.

    One ``FnBuilder`` per future *instance* of a task (the root, and each inlined child);
    they share the emission (``PollGen``) and write into one function."""

    def __init__(self, gen: PollGen, fut: FutureDef, ctx, on_ready, prefix: str):
        super().__init__(gen.module, gen.fn)
        self.gen, self.fut, self.ctx = gen, fut, ctx
        self._on_ready = on_ready  # on_ready(f, value): completes this future
        self.prefix = prefix
        self.args: dict[str, Slot] = {}
        self.locals: dict[str, Slot] = {}
        self.start = self.new_label(f"start_{fut.name}")
        self._state: int | None = None  # where pending() resumes (None: this future's start)

    @property
    def task(self) -> Reg:
        return self.gen.task

    @property
    def exec(self) -> Reg:
        return self.gen.exec

    @property
    def space(self) -> str:
        return self.gen.space

    # The lowering check: every register use must be in the segment that defined it.
    def emit(self, op, mods=(), types=(), dst=None, srcs=(), pred=None, **extra):
        gen = self.gen
        used = [s for s in srcs if isinstance(s, Reg)]
        used += [s.base for s in srcs if hasattr(s, "base") and isinstance(s.base, Reg)]
        used += [r for s in srcs if hasattr(s, "regs") for r in s.regs]
        guard = pred or self._guard
        if guard is not None:
            used.append(guard[0])
        for r in used:
            seg = gen.def_segment.get(r.name)
            if r.name in gen.exempt or seg is None or seg == gen.segment:
                continue
            raise FutureBuildError(
                f"in async fn {self.fut.name}: register %{r.name} is live across an await "
                f"(defined before await #{min(seg, gen.segment) + 1}, used after); "
                f"keep it in a frame local (f.local / f.set / f.get)")
        ins = super().emit(op, mods, types, dst, srcs, pred, **extra)
        for d in (dst.regs if hasattr(dst, "regs") else (dst,) if dst is not None else ()):
            if d.name not in gen.exempt:
                gen.def_segment[d.name] = gen.segment
        return ins

    # ---------------------------------------------------------------- slots

    def bind_args(self, values=None) -> None:
        """Give each argument a slot; ``values`` (registers or immediates) are moved in."""
        for k, (pname, t) in enumerate(self.fut.params):
            s = self.gen.new_slot(f"{self.prefix}.{pname}", t, is_arg=values is None)
            self.args[pname] = s
            if values is not None:
                self.mov(values[k], type=t, dst=s.reg)

    def arg(self, name: str) -> Reg:
        """Argument ``name`` (valid in any state)."""
        try:
            s = self.args[name]
        except KeyError:
            raise FutureBuildError(f"{self.fut.name} has no argument {name!r}") from None
        return self.mov(s.reg, type=s.type)

    def local(self, name: str, t: PtxType) -> None:
        """Declare a frame-resident local: a value that may live across awaits."""
        if name in self.locals:
            raise FutureBuildError(f"local {name!r} declared twice in {self.fut.name}")
        self.locals[name] = self.gen.new_slot(f"{self.prefix}.{name}", t)

    def _slot(self, name) -> Slot:
        try:
            return self.locals[name]
        except KeyError:
            raise FutureBuildError(f"{self.fut.name} has no local {name!r}; declare it with "
                                   f"f.local(name, type)") from None

    def set(self, name: str, value) -> None:
        s = self._slot(name)
        self.mov(value, type=s.type, dst=s.reg)

    def get(self, name: str) -> Reg:
        s = self._slot(name)
        return self.mov(s.reg, type=s.type)

    # ---------------------------------------------------------------- states

    def new_state(self) -> None:
        """A resume point here: ``pending()`` after it resumes at this place."""
        label = self.new_label(f"state_{self.fut.name}")
        self._state = self.ctx.state(label)
        self.gen.bump()
        self.place(label)

    def _start_state(self) -> int:
        if self._state is None:  # pending() before any state: resume at the start
            self._state = self.ctx.state(self.start)
        return self._state

    def pending(self) -> None:
        """Return Pending: the next poll resumes at the last ``new_state`` (or the start)."""
        self.ctx.suspend(self, self._start_state())

    def suspend(self) -> None:
        """Return Pending once, having woken ourselves (``yield_now``'s body)."""
        label = self.new_label(f"state_{self.fut.name}")
        k = self.ctx.state(label)
        self.wake_self()
        self.ctx.suspend(self, k)
        self._state = k
        self.gen.bump()
        self.place(label)

    def ready(self, value=None) -> None:
        """Complete with ``value`` (None for a future without output)."""
        self._on_ready(self, value)

    def wake_self(self) -> None:
        """``cx.waker().wake_by_ref()``: a call of the executor's ``wake`` -- none at all
        when that is a no-op (block_on's), as LLVM drops a call of a known empty function."""
        self.wake(self.task)

    def wake(self, task) -> None:
        """``waker.wake()`` of task ``task`` (a u32 id) through the executor's ``wake``."""
        if not is_noop_wake(self.module):
            self.call("wake", [task, self.exec])

    # ---------------------------------------------------------------- children

    def _child(self, call: FutureCall, ctx, on_ready, tag: str) -> "FnBuilder":
        c = FnBuilder(self.gen, call.fut, ctx, on_ready, f"{self.prefix}/{tag}{call.fut.name}")
        c.bind_args(list(call.args))
        return c

    def await_(self, call: FutureCall) -> Reg | None:
        """``call.await``: the child's poll body, inlined; its suspensions suspend this
        task and resume inside it. Returns the child's output register (or None)."""
        fut = call.fut
        after = self.new_label(f"awaited_{fut.name}")
        out = self.reg(fut.output) if fut.output is not None else None
        if out is not None:
            self.gen.exempt.add(out.name)  # set by the child's ready, read right after

        def on_ready(c, value):
            if out is not None:
                c.mov(value, type=fut.output, dst=out)
            c.bra(after)

        c = self._child(call, self.ctx, on_ready, "")
        self.gen.bump()
        _write_body(c)
        self.place(after)
        self.gen.bump()
        return out

    def _side_by_side(self, calls, on_child_ready):
        """Children polled side by side (join, select): each with its own state machine
        (a resume slot), started here; returns their builders, after the join's state."""
        children = []
        for i, c in enumerate(calls):
            after = self.new_label(f"polled_{c.fut.name}")
            ctx = _ChildCtx(self.gen, f"{self.prefix}/{i}{c.fut.name}", after)
            child = self._child(c, ctx, on_child_ready(i, after), f"{i}")
            self.mov(0, type=U32, dst=ctx.resume.reg)
            children.append((child, ctx, after))
        self.new_state()  # the join's own resume point: poll the unfinished children
        return children

    def _poll_child(self, child: "FnBuilder", ctx: _ChildCtx) -> None:
        dispatch = self.emit("brx.idx", (), (), None, (ctx.resume.reg,), targets=[],
                             table=f"$T_child_{self.next_id()}")
        ctx.state(child.start)  # state 0 of a child: its start (labels[0])
        _write_body(child)
        dispatch.extra["targets"] = list(ctx.labels)
        self.place(ctx.after)

    def join(self, *calls: FutureCall) -> list:
        """``join!(a, b, ...)``: poll every unfinished child each time; Ready when all are."""
        mask = self.gen.new_slot(f"{self.prefix}.join_mask", U32)
        outs = [self.gen.new_slot(f"{self.prefix}.join_out{i}", c.fut.output)
                if c.fut.output is not None else None for i, c in enumerate(calls)]
        self.mov(0, type=U32, dst=mask.reg)

        def on_child_ready(i, after):
            def done(c, value):
                if outs[i] is not None:
                    c.mov(value, type=outs[i].type, dst=outs[i].reg)
                c.or_(mask.reg, 1 << i, type=U32, dst=mask.reg)
                c.bra(after)
            return done

        children = self._side_by_side(calls, on_child_ready)
        for i, (child, ctx, _) in enumerate(children):
            finished = self.setp("ne", self.and_(mask.reg, 1 << i, type=U32), 0, type=U32)
            self.bra(ctx.after, pred=(finished, False))
            self._poll_child(child, ctx)
        all_done = self.setp("eq", mask.reg, (1 << len(calls)) - 1, type=U32)
        cont = self.new_label("joined")
        self.bra(cont, pred=(all_done, False))
        self.pending()
        self.place(cont)
        self.gen.bump()
        return [self.mov(o.reg, type=o.type) if o is not None else None for o in outs]

    def select(self, *calls: FutureCall) -> tuple:
        """``select_biased!(a, b, ...)``: poll the children in order; the first Ready wins and
        the others are dropped (never polled again). Returns (index, winner's output)."""
        out_t = calls[0].fut.output
        if any(c.fut.output != out_t for c in calls):
            raise FutureBuildError("select needs children with one output type")
        index = self.reg(U32)
        value = self.reg(out_t) if out_t is not None else None
        self.gen.exempt.update(r.name for r in (index, value) if r is not None)
        done = self.new_label("selected")

        def on_child_ready(i, after):
            def won(c, v):
                c.mov(i, type=U32, dst=index)
                if value is not None:
                    c.mov(v, type=out_t, dst=value)
                c.bra(done)
            return won

        for child, ctx, _ in self._side_by_side(calls, on_child_ready):
            self._poll_child(child, ctx)
        self.pending()
        self.place(done)
        self.gen.bump()
        return index, value

    def spawn(self, fut: FutureDef, args) -> Reg:
        """``spawner.spawn(fut(args))``: start ``fut`` as a new task of this executor through
        the executor-supplied ``spawn(task, exec, poll_fn, args) -> u32``. ``fut`` must have
        the root signature ``(task u32, args u64)``. Returns the new task's id, or
        ``SPAWN_FAILED`` (0xFFFFFFFF) when the executor's task pool is full."""
        if tuple((n, t.name) for n, t in fut.params) != (("task", "u32"), ("args", "u64")):
            raise FutureBuildError(f"spawned future {fut.name} must take (task u32, args u64)")
        if "spawn" not in self.module.functions:
            raise FutureBuildError(f"{self.fut.name} spawns {fut.name}, but this executor "
                                   f"defines no spawn(task, exec, poll_fn, args)")
        fut.emit(self.module, self.gen.space)  # the child's frame is the spawner's kind
        poll_fn = self.mov(Sym(fut.poll_name))  # the child's type-erased poll_fn
        return self.call("spawn", [self.task, self.exec, poll_fn, args])


def _write_body(f: FnBuilder) -> None:
    """A future's code: its start label, then its body. Falling off the end of a body is a
    bug in the body (it never completes): a trap, not a silent hang."""
    f.place(f.start)
    f.fut.lower(f)
    f.trap()


# ----------------------------------------------------------------- the entries


def build_poll(module: Module, fut: FutureDef, first: bool = False,
               space: str = "global") -> None:
    """Emit ``poll_<fut>`` (or, with ``first``, ``start_<fut>``) once, with frames in
    ``space``; lays out the frame."""
    if space not in FRAME_SPACES:
        raise FutureBuildError(f"frame space must be one of {', '.join(FRAME_SPACES)}, not {space!r}")
    name = fut.start_name if first else fut.poll_name
    if name in module.functions:
        return
    params = POLL_PARAMS + (tuple((f"arg_{n}", t) for n, t in fut.params) if first else ())
    b = Builder.func(module, name, params, ret=U32)
    frame = b.param("frame")
    if space == "shared":
        frame = b.cvt(frame, U32)
    task, exec_ = b.param("task"), b.param("exec")
    gen = PollGen(module, b.fn, fut, frame, task, exec_, first, space)

    def ret_pending(f):
        f.ret(f.mov(PENDING, type=U32))

    def ret_ready(f, value):
        # A task's output is dropped: these executors have no JoinHandle (tasks publish
        # results through memory), so Ready writes nothing to the frame.
        f.ret(f.mov(READY, type=U32))

    top = FnBuilder(gen, fut, _TaskCtx(gen, ret_pending), ret_ready, fut.name)
    if first:
        values = [b.param(f"arg_{n}") for n, _ in fut.params]
        top.bind_args(values)
        for s in top.args.values():
            s.is_arg = True
        gen.exempt.update(v.name for v in values)
        gen.fn.body.append(_Init())
        gen.states.append(top.start)
        _write_body(top)
    else:
        top.bind_args()
        resume = b.ld(space, row_mem(frame, RESUME_ROW), U32)
        dispatch = b.emit("brx.idx", (), (), None, (resume,), targets=[],
                          table=f"$T_resume_{b.next_id()}")
        gen.states.append(top.start)
        _write_body(top)
        stubs = []
        for k, label in enumerate(gen.states):
            stub = b.new_label(f"resume{k}")
            b.place(stub)
            gen.fn.body.append(_Reload(k))
            b.bra(label)
            stubs.append(stub)
        dispatch.extra["targets"] = stubs
    gen.finish()
    layout = {s.name: (s.row, s.type.name) for s in gen.slots if s.row is not None}
    sibling = fut.poll_name if first else fut.start_name  # the other entry, same frame
    if sibling in module.functions and fut.slots != layout:
        raise FutureBuildError(f"{name} laid out its frame differently from {sibling}")
    fut.rows, fut.states, fut.slots = gen.next_row, len(gen.states), layout


class RegisterTask:
    """A task whose frame is registers: its poll body is written into the caller's
    function (an executor's run loop that keeps the task on one thread), the slots and the
    resume index stay in registers between polls, and nothing touches memory.

        t = RegisterTask(b, root, task, exec, [task, args])   # before the run loop
        status = t.poll()                                       # inside it, once
    """

    def __init__(self, b: Builder, fut: FutureDef, task: Reg, exec_: Reg, args: list):
        self.b, self.fut = b, fut
        self.gen = PollGen(b.module, b.fn, fut, None, task, exec_, True, "registers")
        self.gen.resume = b.mov(0, type=U32)
        self.gen.exempt.add(self.gen.resume.name)
        self.status = b.reg(U32)
        self.gen.exempt.add(self.status.name)
        self.cont = b.new_label(f"polled_{fut.name}")

        def ret_pending(f):
            f.mov(PENDING, type=U32, dst=self.status)
            f.bra(self.cont)

        def ret_ready(f, value):
            f.mov(READY, type=U32, dst=self.status)
            f.bra(self.cont)

        self.top = FnBuilder(self.gen, fut, _TaskCtx(self.gen, ret_pending), ret_ready, fut.name)
        self.top.bind_args(args)
        for s in self.top.args.values():
            s.is_arg = True
        self._init = _Init()
        b.fn.body.append(self._init)
        self.polled = False

    def poll(self) -> Reg:
        """Emit one poll (dispatch on the resume register, then the body); returns the
        status register (READY/PENDING)."""
        if self.polled:
            raise FutureBuildError(f"a RegisterTask of {self.fut.name} is polled from one place")
        self.polled = True
        b, gen = self.b, self.gen
        dispatch = b.emit("brx.idx", (), (), None, (gen.resume,), targets=[],
                          table=f"$T_resume_{b.next_id()}")
        gen.states.append(self.top.start)
        _write_body(self.top)
        dispatch.extra["targets"] = list(gen.states)
        b.place(self.cont)
        # The frame is registers: nothing to spill; define the slots before the loop.
        inits = gen._scratch(lambda bb: [bb.mov(0, type=s.type, dst=s.reg)
                                         for s in gen.slots if not s.is_arg])
        i = b.fn.body.index(self._init)
        b.fn.body[i:i + 1] = inits
        self.fut.states = len(gen.states)
        return self.status


def write_task_args(b: Builder, space: str, frame, fut: FutureDef, values: list) -> None:
    """Write a not-yet-polled task's arguments into its frame with resume 0 (what a
    spawner does before queueing the task; its first poll is ``poll_<fut>``)."""
    for (pname, t), v in zip(fut.params, values):
        st_row(b, space, frame, fut.arg_row(pname), v, t)
    b.st(space, row_mem(frame, RESUME_ROW), b.mov(0, type=U32), type=U32)
