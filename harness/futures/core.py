"""Rust's Future/poll model lowered to PTX state machines (DESIGN §4).

A ``FutureDef`` is a future *type*: it owns a frame layout and emits one
``.func (.param .b32 ret) poll_<name>(.param .b64 frame, .param .b32 task, .param .b64 exec)``
returning ``READY`` or ``PENDING``. A frame is laid out as:

    offset 0   u32  resume   state index; 0 = not yet polled
    offset 8   u64  output   the value once Ready
    offset 16  ...  args     written by whoever creates the future
    ...        ...  locals   values that live across an await (declared)
    ...        ...  children one region shared by the children of different await points

The waker is ``(task, exec)``: futures never know their executor; they call the ``wake``
function each executor supplies (``wake_by_ref`` of the current task is the common case).

Frame space: frames live in global memory unless the executor puts a module's frames in
shared memory (``set_frame_space(module, "shared")``, DESIGN §4: block-local ``!Send``
tasks). Then every frame access of every future in that module is ``ld/st.shared`` with a
32-bit address, and the poll ABI is unchanged: the u64 ``frame`` argument carries the
zero-extended shared-window offset (generic addressing would also work on hardware, but
the emulator has no generic space, and a 32-bit shared address is what the hardware
wants anyway). The space is per module, not per future, because a child's frame lives
inside its parent's frame (so a whole task tree shares one space) and a poll function is
emitted once per module for every task type that awaits it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import PollbenchError
from harness.ptx import Builder, Module, Reg, Sym
from harness.ptx.types import U32, U64, PtxType

PENDING, READY = 0, 1
SPAWN_FAILED = 0xFFFFFFFF  # spawn's result when the executor's task pool is full
RESUME, OUTPUT, ARGS = 0, 8, 16
POLL_PARAMS = (("frame", U64), ("task", U32), ("exec", U64))
FRAME_SPACES = ("global", "shared")


class FutureBuildError(PollbenchError):
    """An async fn that cannot be lowered (e.g. a register live across an await)."""


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


@dataclass
class FutureDef:
    """A future type: its arguments, output, frame size and poll function."""

    name: str
    params: tuple = ()  # (name, PtxType)
    output: PtxType | None = None
    locals_: dict = field(default_factory=dict)  # name -> (offset, type)
    child_region: int = 0  # offset of the shared children region
    frame_size: int = 0
    states: int = 1
    children: list = field(default_factory=list)  # FutureDefs awaited

    @property
    def poll_name(self) -> str:
        return f"poll_{self.name}"

    def arg_offset(self, name: str) -> int:
        off = ARGS
        for pname, t in self.params:
            if pname == name:
                return off
            off += 8
        raise FutureBuildError(f"{self.name} has no argument {name!r}")

    def __call__(self, *args) -> "FutureCall":
        if len(args) != len(self.params):
            raise FutureBuildError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        return FutureCall(self, tuple(args))

    def emit(self, module: Module) -> None:
        """Add this future's poll function (and its children's) to ``module`` once."""
        build_poll(module, self, self.lower)

    def lower(self, f: "FnBuilder") -> None:
        """Write the poll body (its states included) with ``f``."""
        raise NotImplementedError


@dataclass(frozen=True)
class FutureCall:
    """A future value: a type applied to arguments (what ``.await`` consumes)."""

    fut: FutureDef
    args: tuple


def frame_space(module: Module) -> str:
    """The state space of every frame in ``module``: ``"global"`` unless set."""
    return getattr(module, "_frame_space", "global")


def set_frame_space(module: Module, space: str) -> None:
    """Put every future frame of ``module`` in ``space`` (``"global"`` or ``"shared"``).
    Must be set before the first poll function is emitted: code already emitted for one
    space cannot address the other."""
    if space not in FRAME_SPACES:
        raise FutureBuildError(f"frame space must be one of {', '.join(FRAME_SPACES)}, not {space!r}")
    if space != frame_space(module) and any(n.startswith("poll_") for n in module.functions):
        raise FutureBuildError(f"this module already has poll functions with {frame_space(module)} "
                               f"frames; set the frame space before emitting any future")
    module._frame_space = space


# ------------------------------------------------------------------- the DSL builder


class FnBuilder(Builder):
    """The builder an async fn body is written with: a ``Builder`` plus ``await_``,
    declared frame locals, and a check that no register lives across an await."""

    def __init__(self, module: Module, fut: FutureDef, fn, inline: tuple | None = None):
        """``inline``: ``(frame, task, exec, status, continue_label)`` to write the poll body
        into a caller's function instead of a ``.func`` of its own (inline dispatch):
        returning is then ``status = READY/PENDING; bra continue_label``."""
        super().__init__(module, fn)
        self.fut = fut
        self.segment = 0
        self._def_segment: dict[str, int] = {}
        self._global_regs: set[str] = set()
        self.space = frame_space(module)
        # A frame address: u64 in global memory, u32 (a shared-window offset) in shared.
        self.addr_type = U32 if self.space == "shared" else U64
        self.inline = inline
        if inline is not None:
            frame, task, exec_, self._status, self._continue = inline
            for r in (frame, task, exec_, self._status):
                self._global(r)
            self.frame, self.task, self.exec = frame, task, exec_
        else:
            frame = self.param("frame")
            if self.space == "shared":
                frame = self.cvt(frame, U32)
            self.frame = self._global(frame)
            self.task = self._global(self.param("task"))
            self.exec = self._global(self.param("exec"))
        self.state_labels: list = []
        self._child_bytes = 0
        self._local_off = ARGS + 8 * len(fut.params)
        self._children_at: int | None = None

    def _global(self, r: Reg) -> Reg:
        self._global_regs.add(r.name)
        return r

    # The lowering check: every register use must be in the segment that defined it.
    def emit(self, op, mods=(), types=(), dst=None, srcs=(), pred=None, **extra):
        used = [s for s in srcs if isinstance(s, Reg)]
        used += [s.base for s in srcs if hasattr(s, "base") and isinstance(s.base, Reg)]
        used += [r for s in srcs if hasattr(s, "regs") for r in s.regs]
        guard = pred or self._guard
        if guard is not None:
            used.append(guard[0])
        for r in used:
            seg = self._def_segment.get(r.name)
            if r.name in self._global_regs or seg is None or seg == self.segment:
                continue
            raise FutureBuildError(
                f"in async fn {self.fut.name}: register %{r.name} is live across an await "
                f"(defined before await #{seg + 1 if seg < self.segment else seg}, used after); "
                f"keep it in a frame local (f.local / f.set / f.get)")
        ins = super().emit(op, mods, types, dst, srcs, pred, **extra)
        for d in (dst.regs if hasattr(dst, "regs") else (dst,) if dst is not None else ()):
            self._def_segment[d.name] = self.segment
        return ins

    # ---------------------------------------------------------------- frame access

    def frame_ld(self, addr: Reg, t: PtxType, **kw) -> Reg:
        """Load from a frame address (this frame's or a child's), in the frame space."""
        return self.ld(self.space, addr, t, **kw)

    def frame_st(self, addr: Reg, value, t: PtxType | None = None, **kw) -> None:
        """Store to a frame address, in the frame space."""
        self.st(self.space, addr, value, type=t, **kw)

    def frame_offset(self, base: Reg, off: int) -> Reg:
        """``base + off`` for a frame address ``base``."""
        return self.add(base, off, type=self.addr_type) if off else base

    def arg(self, name: str) -> Reg:
        """Load argument ``name`` from the frame (valid in any state)."""
        t = dict(self.fut.params)[name]
        return self.frame_ld(self._frame_addr(self.fut.arg_offset(name)), t)

    def local(self, name: str, t: PtxType) -> None:
        """Declare a frame-resident local: a value that may live across awaits."""
        if name in self._layout:
            raise FutureBuildError(f"local {name!r} declared twice in {self.fut.name}")
        if self._children_at is not None:
            raise FutureBuildError(f"in {self.fut.name}: declare local {name!r} before the "
                                   f"first await (the children region follows the locals)")
        size = max(8, t.nbytes)
        self._local_off = _align(self._local_off, 8)
        self._layout[name] = (self._local_off, t)
        self._local_off += size

    def set(self, name: str, value) -> None:
        off, t = self._slot(name)
        self.frame_st(self._frame_addr(off), value, t)

    def get(self, name: str) -> Reg:
        off, t = self._slot(name)
        return self.frame_ld(self._frame_addr(off), t)

    @property
    def _layout(self) -> dict:
        # An inlined body re-declares the locals of a layout its .func already resolved:
        # it checks against a layout of its own, which must come out identical.
        if self.inline is None:
            return self.fut.locals_
        if not hasattr(self, "_inline_layout"):
            self._inline_layout = {}
        return self._inline_layout

    def _slot(self, name):
        try:
            return self._layout[name]
        except KeyError:
            raise FutureBuildError(f"{self.fut.name} has no local {name!r}; declare it with "
                                   f"f.local(name, type)") from None

    def _frame_addr(self, off: int) -> Reg:
        return self.frame_offset(self.frame, off)

    # ---------------------------------------------------------------- await

    def child_frame(self, offset_in_region: int = 0) -> Reg:
        """Address of a child frame inside this frame's children region (after the locals;
        children of different await points share it, as rustc's layout does)."""
        if self._children_at is None:
            self._children_at = _align(self._local_off, 16)
        return self.add(self.frame, self._children_at + offset_in_region, type=self.addr_type)

    def reserve_children(self, nbytes: int) -> None:
        self._child_bytes = max(self._child_bytes, nbytes)

    def start(self, call: FutureCall, child: Reg) -> None:
        """Initialise a child future's frame: its arguments, and resume = 0."""
        fut = call.fut
        for (pname, t), a in zip(fut.params, call.args):
            self.frame_st(self.frame_offset(child, fut.arg_offset(pname)), a, t)
        self.frame_st(child, self.mov(0, type=U32))
        if fut not in self.fut.children:
            self.fut.children.append(fut)

    def poll_child(self, fut: FutureDef, child: Reg) -> Reg:
        """Poll a child: call its poll function, or, in an inlined body, inline the child
        too (monomorphised all the way down, as rustc does). Returns the status register."""
        if self.inline is not None:
            return inline_poll(self, fut, child, self.task, self.exec)
        if child.type.bits == 32:  # the ABI's frame is u64 whatever the space
            child = self.cvt(child, U64)
        return self.call(fut.poll_name, [child, self.task, self.exec])

    def ret(self, value=None) -> None:
        """Return ``value`` (READY/PENDING) to the poller: ``ret`` from the ``.func``, or in
        an inlined body ``status = value`` and a branch to the caller's continuation."""
        if self.inline is None:
            return super().ret(value)
        self.mov(value, type=U32, dst=self._status)
        self.bra(self._continue)

    def new_state(self) -> None:
        """Split here: set resume to the next state and open a new segment."""
        label = self.new_label(f"state{len(self.state_labels)}")
        self.state_labels.append(label)
        self.frame_st(self.frame, self.mov(len(self.state_labels), type=U32))
        self.segment += 1
        self.place(label)

    def return_pending_if(self, status: Reg) -> None:
        pending = self.setp("eq", status, PENDING)
        with self.when(pending):
            self.ret(self.mov(PENDING, type=U32))

    def await_(self, call: FutureCall) -> Reg | None:
        """``call.await``: start the child, then poll it until Ready, returning Pending to
        our own poller meanwhile. Returns the child's output register (or None)."""
        fut = call.fut
        fut.emit(self.module)
        self.reserve_children(fut.frame_size)
        self.start(call, self.child_frame())
        self.new_state()
        child = self.child_frame()
        self.return_pending_if(self.poll_child(fut, child))
        if fut.output is None:
            return None
        return self.frame_ld(self.frame_offset(child, OUTPUT), fut.output)

    def join(self, *calls: FutureCall) -> list:
        """``join!(a, b, ...)``: poll every unfinished child each time; Ready when all are.
        The children get their own frames (and a done mask) in the children region."""
        offsets, off = [], 16
        for c in calls:
            c.fut.emit(self.module)
            offsets.append(off)
            off += _align(c.fut.frame_size, 16)
        self.reserve_children(off)
        for c, o in zip(calls, offsets):
            self.start(c, self.child_frame(o))
        self.frame_st(self.child_frame(), self.mov(0, type=U32))
        self.new_state()
        mask = self.frame_ld(self.child_frame(), U32)
        for i, (c, o) in enumerate(zip(calls, offsets)):
            unfinished = self.setp("eq", self.and_(mask, 1 << i, type=U32), 0)
            with self.if_(unfinished):
                ready = self.setp("eq", self.poll_child(c.fut, self.child_frame(o)), READY)
                with self.when(ready):
                    self.or_(mask, 1 << i, type=U32, dst=mask)
        self.frame_st(self.child_frame(), mask)
        all_done = self.setp("eq", mask, (1 << len(calls)) - 1, type=U32)
        with self.when(all_done, negate=True):
            self.ret(self.mov(PENDING, type=U32))
        return [self.frame_ld(self.frame_offset(self.child_frame(o), OUTPUT), c.fut.output)
                if c.fut.output is not None else None for c, o in zip(calls, offsets)]

    def select(self, *calls: FutureCall) -> tuple:
        """``select_biased!(a, b, ...)``: poll the children in order; the first Ready wins and
        the others are dropped (never polled again). Returns (index, winner's output)."""
        offsets, off = [], 0
        out_t = calls[0].fut.output
        for c in calls:
            c.fut.emit(self.module)
            if c.fut.output != out_t:
                raise FutureBuildError("select needs children with one output type")
            offsets.append(off)
            off += _align(c.fut.frame_size, 16)
        self.reserve_children(off)
        for c, o in zip(calls, offsets):
            self.start(c, self.child_frame(o))
        self.new_state()
        index = self.reg(U32)
        value = self.reg(out_t) if out_t is not None else None
        done = self.new_label("selected")
        for i, (c, o) in enumerate(zip(calls, offsets)):
            child = self.child_frame(o)
            ready = self.setp("eq", self.poll_child(c.fut, child), READY)
            with self.when(ready):
                self.mov(i, type=U32, dst=index)
                if value is not None:
                    self.frame_ld(self.frame_offset(child, OUTPUT), out_t, dst=value)
                self.bra(done)
        self.pending()
        self.place(done)
        return index, value

    def suspend(self) -> None:
        """Return Pending once, having woken ourselves (``yield_now``'s body)."""
        label = self.new_label(f"state{len(self.state_labels)}")
        self.state_labels.append(label)
        self.frame_st(self.frame, self.mov(len(self.state_labels), type=U32))
        self.wake_self()
        self.pending()
        self.segment += 1
        self.place(label)

    def wake_self(self) -> None:
        """``cx.waker().wake_by_ref()``."""
        self.call("wake", [self.task, self.exec])

    def spawn(self, fut: "FutureDef", args) -> Reg:
        """``spawner.spawn(fut(args))``: start ``fut`` as a new task of this executor through
        the executor-supplied ``spawn(task, exec, poll_fn, args) -> u32``. ``fut`` must have
        the root signature ``(task u32, args u64)``. Returns the new task's id, or
        ``SPAWN_FAILED`` (0xFFFFFFFF) when the executor's task pool is full."""
        if tuple((n, t.name) for n, t in fut.params) != (("task", "u32"), ("args", "u64")):
            raise FutureBuildError(f"spawned future {fut.name} must take (task u32, args u64)")
        if "spawn" not in self.module.functions:
            raise FutureBuildError(f"{self.fut.name} spawns {fut.name}, but this executor "
                                   f"defines no spawn(task, exec, poll_fn, args)")
        fut.emit(self.module)
        poll_fn = self.mov(Sym(fut.poll_name))  # the child's type-erased poll_fn
        return self.call("spawn", [self.task, self.exec, poll_fn, args])

    def ready(self, value=None) -> None:
        """Store the output (if any) and return READY."""
        if value is not None:
            self.frame_st(self.frame_offset(self.frame, OUTPUT), value, self.fut.output)
        self.ret(self.mov(READY, type=U32))

    def pending(self) -> None:
        self.ret(self.mov(PENDING, type=U32))


def build_poll(module: Module, fut: FutureDef, body) -> None:
    """Emit ``poll_<fut>`` with ``body(f)`` as its code; resolves the frame layout."""
    if fut.poll_name in module.functions:
        return
    fut.locals_, fut.children = {}, []  # the layout is rebuilt for each module
    fn = Builder.func(module, fut.poll_name, POLL_PARAMS, ret=U32).fn
    f = FnBuilder(module, fut, fn)
    _write_body(f, body)
    fut.states = 1 + len(f.state_labels)
    fut.child_region = f._children_at if f._children_at is not None else _align(f._local_off, 16)
    fut.frame_size = _align(fut.child_region + f._child_bytes, 16)


def _write_body(f: FnBuilder, body) -> None:
    """The poll body: dispatch on ``resume`` to the state to continue from, then the code."""
    resume = f._global(f.frame_ld(f.frame, U32))
    start = f.new_label("start")
    dispatch = f.emit("brx.idx", (), (), None, (resume,), targets=[start],
                      table=f"$T_resume_{f._next_label()}")
    f.place(start)
    body(f)
    f.pending()  # falling off the end of a body is a bug in the body: never Ready
    dispatch.extra["targets"] = [start] + f.state_labels


def inline_poll(b: Builder, fut: FutureDef, frame: Reg, task: Reg, exec_: Reg) -> Reg:
    """Poll ``fut`` (frame at ``frame``) by writing its poll body into ``b``'s function
    (inline dispatch): no ABI call, no callee-saved spills, and ptxas sees the whole state
    machine. Returns the status register (READY/PENDING). The ``.func`` is still emitted:
    it resolves the frame layout the inlined copy must agree with."""
    fut.emit(b.module)
    status = b.reg(U32)
    cont = b.new_label(f"polled_{fut.name}")
    f = FnBuilder(b.module, fut, b.fn, inline=(frame, task, exec_, status, cont))
    _write_body(f, fut.lower)
    if f._layout != fut.locals_:
        raise FutureBuildError(f"inlined {fut.name} laid out its locals differently "
                               f"from its poll function")
    b.place(cont)
    return status
