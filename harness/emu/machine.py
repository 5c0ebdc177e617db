"""The CPU emulator: runs a builder ``Module`` for small grids, one Python object per thread.

Independent thread scheduling (Volta+): every thread has its own call stack and PC; a
scheduler picks the next thread to step, round-robin or seeded-random (to explore
interleavings). Warp collectives and barriers block a thread until its group has arrived.
Memory is sequentially consistent; weak behaviours are the hardware litmus tests' job.
A hang -- no runnable thread, or the step budget spent -- is an ``EmuHang`` naming each
stuck thread and its instruction, never an endless loop.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from harness.emu.memory import EmuMemoryError, GlobalMemory, Window
from harness.errors import PollbenchError
from harness.ptx.ir import Function, Imm, Instr, LabelDef, Mem, Module, Reg, SReg, Sym
from harness.ptx.ops import BLOCKED, OPS
from harness.ptx.types import PtxType, decode, encode

FUNC_BASE = 0xF0F0_0000_0000  # emulated addresses of .func code, for indirect calls
WARP = 32


class EmuError(PollbenchError):
    """A kernel did something undefined in the emulator (trap, bad address, bad call)."""


class EmuHang(EmuError):
    """No thread can make progress, or the step budget ran out."""


def _dim3(x) -> tuple:
    if isinstance(x, int):
        return (x, 1, 1)
    x = tuple(x)
    return x + (1,) * (3 - len(x))


class _Code:
    """A function's instruction list with resolved labels and per-PC label regions."""

    def __init__(self, fn: Function):
        self.fn = fn
        self.instrs: list[Instr] = []
        self.labels: dict[str, int] = {}
        self.region: list[str] = []
        current = "<entry>"
        for item in fn.body:
            if isinstance(item, LabelDef):
                self.labels[item.label.name] = len(self.instrs)
                current = item.label.name
            else:
                self.instrs.append(item)
                self.region.append(current)


@dataclass
class Frame:
    code: _Code
    params: Window
    param_offsets: dict
    local_offsets: dict
    local_base: int
    pc: int = 0
    regs: dict = field(default_factory=dict)
    ret_dst: Reg | None = None


class _Block:
    def __init__(self, ctaid: tuple, linear: int, shared_bytes: int):
        self.ctaid = ctaid
        self.linear = linear
        self.shared = Window(f"shared memory of block {ctaid}", shared_bytes)
        self.threads: list[Thread] = []
        self.barriers: dict = {}
        self.warps: dict = {}
        self.bulk_pending: dict = {}  # mbarrier address -> bulk copies not yet landed
        self.mbarriers: set = set()  # shared addresses holding a valid mbarrier object


class _Warp:
    def __init__(self):
        self.threads: dict[int, Thread] = {}
        self.pending: dict = {}

    def alive_mask(self) -> int:
        return sum(1 << lane for lane, t in self.threads.items() if t.status != "done")


class Thread:
    """One emulated thread: what the op table's semantics functions act on."""

    def __init__(self, emu: "Emulator", block: _Block, tid: tuple, linear: int):
        self.emu, self.block, self.tid, self.linear = emu, block, tid, linear
        self.lane, self.warp_id = linear % WARP, linear // WARP
        self.warp: _Warp = block.warps.setdefault(self.warp_id, _Warp())
        self.warp.threads[self.lane] = self
        self.frames: list[Frame] = []
        self.local = Window(f"local memory of thread {tid} in block {block.ctaid}")
        self.status = "run"  # run | wait | sleep | done
        self.wake_at = 0
        self.executed = 0
        self.regions: Counter = Counter()
        self.cp_pending: list = []
        self.cp_groups: list = []
        self.issuing = None  # (frame, pc) of the instruction executing or waited at

    # ---------------------------------------------------------------- operand access

    @property
    def frame(self) -> Frame:
        return self.frames[-1]

    def bits(self, x, t: PtxType | None = None) -> int:
        """Raw bits of an operand (register, immediate, special register, symbol address)."""
        if isinstance(x, Reg):
            try:
                return self.frame.regs[x.name]
            except KeyError:
                raise EmuError(f"read of uninitialised register %{x.name} in "
                               f"{self.frame.code.fn.name}: {self.where()}") from None
        if isinstance(x, Imm):
            return encode(x.value, t or x.type)
        if isinstance(x, SReg):
            return self.emu.special(self, x.name)
        if isinstance(x, Sym):
            return self.symbol(x.name)
        raise EmuError(f"operand {x} has no value")

    def val(self, x, t: PtxType):
        """An operand decoded as type ``t``."""
        if isinstance(x, Imm):
            return decode(encode(x.value, t), t)
        return decode(self.bits(x, t), t)

    def set_bits(self, reg: Reg, bits: int) -> None:
        self.frame.regs[reg.name] = bits & reg.type.mask

    def set(self, reg: Reg, value, t: PtxType) -> None:
        """Write ``value`` encoded as ``t`` (ints wrap), zero/sign-extended to the register."""
        bits = encode(value, t)
        if reg.type.bits > t.bits and t.kind == "s":
            bits = encode(decode(bits, t), reg.type)
        self.frame.regs[reg.name] = bits & reg.type.mask

    # --------------------------------------------------------------------- memory

    def symbol(self, name: str) -> int:
        f = self.frame
        for table in (f.param_offsets, f.local_offsets, self.emu.shared_offsets,
                      self.emu.global_vars, self.emu.func_addrs):
            if name in table:
                return table[name]
        raise EmuError(f"unknown symbol {name!r} in {f.code.fn.name}")

    def addr(self, mem: Mem) -> int:
        return self.bits(mem.base) + mem.offset

    def _space(self, space: str):
        if space == "global":
            return self.emu.mem
        if space == "shared":
            return self.block.shared
        if space == "local":
            return self.local
        if space == "param":
            return self.frame.params
        raise EmuError(f"the emulator has no {space} state space (generic addressing)")

    def load(self, space: str, addr: int, n: int) -> int:
        return self._space(space).load(addr, n)

    def store(self, space: str, addr: int, n: int, bits: int) -> None:
        self._space(space).store(addr, n, bits)

    # ---------------------------------------------------------------- control flow

    def jump(self, label) -> None:
        try:
            self.frame.pc = self.frame.code.labels[label.name]
        except KeyError:
            raise EmuError(f"branch to undefined label {label.name}") from None

    def call(self, target, args: list, dst: Reg | None) -> None:
        if isinstance(target, Sym):
            name = target.name
        else:
            addr = self.bits(target)
            name = self.emu.func_by_addr.get(addr)
            if name is None:
                raise EmuError(f"indirect call to {addr:#x}, which is no function: {self.where()}")
        fn = self.emu.module.functions[name]
        if fn.kind == "extern":
            hook = self.emu.externs.get(name)
            if hook is None:
                raise EmuError(f"extern function {name} has no emulator hook")
            ret = hook(self, args)
            if dst is not None and ret is not None:
                self.set_bits(dst, ret)
            return
        if len(self.frames) > 64:
            raise EmuError(f"call depth over 64 calling {name}: runaway recursion?")
        self.frames.append(self.emu.new_frame(self, fn, args, dst))

    def ret(self) -> None:
        done = self.frames.pop()
        del self.local.data[done.local_base:]
        if not self.frames:
            self.exit()
            return
        if done.ret_dst is not None and done.code.fn.ret is not None:
            rt = done.code.fn.ret.type
            self.set_bits(done.ret_dst, done.params.load(done.param_offsets["ret"], rt.nbytes))

    def exit(self) -> None:
        self.status = "done"
        self.emu.on_exit(self)

    def trap(self, why: str) -> None:
        raise EmuError(f"{why}: {self.where()}")

    def sleep(self, ns: int) -> None:
        self.status = "sleep"
        self.wake_at = self.emu.now + max(1, ns)

    def location(self) -> str:
        """``in <function> at pc <n>: <instruction>``: the instruction this thread is
        executing or waiting at (its PC has already moved past it), else the next one."""
        f = self.frame
        if self.issuing is not None and self.issuing[0] is f:
            pc = self.issuing[1]
        else:
            pc = min(f.pc, len(f.code.instrs) - 1)
        text = f.code.instrs[pc].to_ptx().replace("\n", " ").replace("\t", "")
        return f"in {f.code.fn.name} at pc {pc}: {text}"

    def where(self) -> str:
        if not self.frames:
            return f"block {self.block.ctaid} thread {self.tid} (exited)"
        return f"block {self.block.ctaid} thread {self.tid} {self.location()}"

    # ----------------------------------------------------------------- collectives

    def warp_alive_mask(self) -> int:
        return self.warp.alive_mask()

    def wait_warp(self, key, mask: int, value, combine, finish):
        """Rendezvous of the warp's threads in ``mask``; the last to arrive releases all."""
        if not mask >> self.lane & 1:
            self.trap(f"lane {self.lane} is not in the member mask {mask:#010x}")
        rv = self.warp.pending.setdefault(key, {"mask": mask, "combine": combine, "lanes": {}})
        rv["lanes"][self.lane] = (self, value, finish)
        self.status = "wait"
        self.emu.try_release_warp(self.warp, key, mask)
        return BLOCKED if self.status == "wait" else None

    def wait_block(self, bar_id: int, count: int | None, arrive_only: bool = False,
                   vote=None):
        """bar.sync / bar.arrive / bar.red on one of the block's barriers; ``vote`` is
        (predicate, finish) for bar.red, finish(thread, all votes) writing the result."""
        rv = self.block.barriers.setdefault(
            bar_id, {"arrived": 0, "waiting": [], "count": count, "votes": []})
        rv["arrived"] += 1
        if vote is not None:
            rv["votes"].append((self, vote[0], vote[1]))
        if not arrive_only:
            rv["waiting"].append(self)
            self.status = "wait"
        self.emu.try_release_barrier(self.block, bar_id)
        return BLOCKED if self.status == "wait" else None

    def cp_async_bulk(self, dst: int, src: int, n: int, mbar: int) -> None:
        """Queue a bulk copy that completes ``n`` transaction bytes on ``mbar`` when it lands
        (at the first wait on ``mbar``: data read before waiting is still the old data)."""
        self.block.bulk_pending.setdefault(mbar, []).append((dst, src, n, n))

    def cp_async_arrive_on(self, mbar: int) -> None:
        """``cp.async.mbarrier.arrive``: every cp.async this thread issued and has not
        waited for now lands with ``mbar``'s copies (at the first wait on it), completing
        no transaction bytes (the arrive itself is the caller's)."""
        for group in self.cp_groups + [self.cp_pending]:
            for dst, src, n in group:
                self.block.bulk_pending.setdefault(mbar, []).append((dst, src, n, 0))
        self.cp_groups, self.cp_pending = [], []

    def land_bulk_copies(self, mbar: int) -> list:
        """The copies queued on ``mbar``, now written to shared memory: (dst, src, bytes,
        transaction bytes) each, whose transaction bytes the caller completes."""
        done = self.block.bulk_pending.pop(mbar, [])
        for dst, src, n, _tx in done:
            for off in range(0, n, 8):
                size = min(8, n - off)
                self.block.shared.store(dst + off, size, self.emu.mem.load(src + off, size))
        return done

    def cp_async(self, dst: int, src: int, n: int) -> None:
        self.cp_pending.append((dst, src, n))

    def cp_async_commit(self) -> None:
        self.cp_groups.append(self.cp_pending)
        self.cp_pending = []

    def cp_async_wait(self, keep: int) -> None:
        while len(self.cp_groups) > keep:
            for dst, src, n in self.cp_groups.pop(0):
                self.block.shared.store(dst, n, self.emu.mem.load(src, n))


@dataclass
class LaunchResult:
    """What one emulated launch did: instruction counts and emulated time."""

    kernel: str
    grid: tuple
    block: tuple
    steps: int
    time_ns: int
    per_thread: np.ndarray  # dynamic instructions per thread, in launch order
    regions: Counter  # (function, label) -> dynamic instructions, all threads


class Emulator:
    """Holds a module, global memory and a scheduler; ``launch`` runs one kernel to the end."""

    def __init__(self, module: Module, policy: str = "round_robin", seed: int = 0,
                 max_steps: int = 5_000_000, n_sms: int = 4):
        if policy not in ("round_robin", "random"):
            raise EmuError(f"unknown scheduling policy {policy!r} (round_robin or random)")
        self.module = module
        self.policy = policy
        self.rng = random.Random(seed)
        self.max_steps = max_steps
        self.n_sms = n_sms
        self.mem = GlobalMemory()
        self.now = 0
        self.externs: dict = {}
        self.codes = {name: _Code(fn) for name, fn in module.functions.items() if fn.kind != "extern"}
        for code in self.codes.values():
            for ins in code.instrs:
                if ins.op not in OPS:
                    raise EmuError(f"opcode {ins.op!r} in {code.fn.name} has no emulator semantics")
        self.func_addrs = {n: FUNC_BASE + 16 * i for i, n in enumerate(module.functions)}
        self.func_by_addr = {a: n for n, a in self.func_addrs.items()}
        self.shared_offsets, self.shared_bytes, self.global_vars = {}, 0, {}
        dynamic = []
        for var in module.globals:
            if var.space != "shared":
                self.global_vars[var.name] = self.mem.alloc(var.nbytes, var.align)
            elif var.dynamic:
                dynamic.append(var)
            else:
                off = -(-self.shared_bytes // var.align) * var.align
                self.shared_offsets[var.name] = off
                self.shared_bytes = off + var.nbytes
        # dynamic shared memory follows the static arrays; every extern array starts there
        align = max([v.align for v in dynamic], default=1)
        self.dynamic_shared_offset = -(-self.shared_bytes // align) * align
        self.shared_offsets.update((v.name, self.dynamic_shared_offset) for v in dynamic)

    # ------------------------------------------------------------------ host side

    def to_device(self, array: np.ndarray) -> int:
        """Copy a host array into a new global buffer; returns its address."""
        addr = self.mem.alloc(max(1, array.nbytes))
        self.mem.write(addr, array)
        return addr

    def alloc(self, nbytes: int) -> int:
        return self.mem.alloc(nbytes)

    def read(self, addr: int, dtype, count: int) -> np.ndarray:
        return self.mem.read(addr, dtype, count)

    def write(self, addr: int, array: np.ndarray) -> None:
        self.mem.write(addr, array)

    # ---------------------------------------------------------------------- frames

    def new_frame(self, thread: Thread, fn: Function, args: list, ret_dst=None) -> Frame:
        params = Window(f"params of {fn.name}")
        offsets = {}
        for p, a in zip(fn.params, args):
            offsets[p.name] = params.grow(p.type.nbytes, p.type.nbytes)
            params.store(offsets[p.name], p.type.nbytes, a)
        if fn.ret is not None:
            offsets["ret"] = params.grow(fn.ret.type.nbytes, fn.ret.type.nbytes)
        base = len(thread.local.data)
        local_offsets = {v.name: thread.local.grow(v.nbytes, v.align) for v in fn.locals}
        return Frame(self.codes[fn.name], params, offsets, local_offsets, base, ret_dst=ret_dst)

    def special(self, t: Thread, name: str) -> int:
        b = t.block
        dims = {"x": 0, "y": 1, "z": 2}
        base, _, axis = name.partition(".")
        if base == "tid":
            return t.tid[dims[axis]]
        if base == "ntid":
            return self._block_dim[dims[axis]]
        if base == "ctaid":
            return b.ctaid[dims[axis]]
        if base == "nctaid":
            return self._grid[dims[axis]]
        return {
            "laneid": lambda: t.lane, "warpid": lambda: t.warp_id,
            "nwarpid": lambda: 64, "smid": lambda: b.linear % self.n_sms,
            "nsmid": lambda: self.n_sms, "clock": lambda: self.now & 0xFFFFFFFF,
            "clock64": lambda: self.now, "globaltimer": lambda: self.now,
            "lanemask_lt": lambda: (1 << t.lane) - 1, "lanemask_eq": lambda: 1 << t.lane,
        }[name]()

    # ----------------------------------------------------------------- collectives

    def try_release_warp(self, warp: _Warp, key, mask: int) -> None:
        rv = warp.pending.get(key)
        if rv is None:
            return
        lanes = rv["lanes"]
        need = mask & warp.alive_mask()
        if need & ~sum(1 << lane for lane in lanes):
            return
        del warp.pending[key]
        results = None
        if rv["combine"] is not None:
            results = rv["combine"]({lane: v for lane, (_, v, _) in lanes.items()})
        for lane, (th, _, finish) in lanes.items():
            if finish is not None:
                finish(th, results[lane])
            th.status, th.issuing = "run", None

    def try_release_barrier(self, block: _Block, bar_id: int) -> None:
        rv = block.barriers.get(bar_id)
        if rv is None:
            return
        expected = rv["count"] or sum(1 for t in block.threads if t.status != "done" or t in rv["waiting"])
        if rv["arrived"] < expected:
            return
        del block.barriers[bar_id]
        votes = [v for _, v, _ in rv["votes"]]
        for th, _, finish in rv["votes"]:
            finish(th, votes)
        for th in rv["waiting"]:
            th.status, th.issuing = "run", None

    def on_exit(self, t: Thread) -> None:
        # An exited thread no longer holds back its warp's collectives or its block's barrier.
        for key, rv in list(t.warp.pending.items()):
            self.try_release_warp(t.warp, key, rv["mask"])
        for bar_id in list(t.block.barriers):
            if t.block.barriers[bar_id]["count"] is None:
                self.try_release_barrier(t.block, bar_id)

    # ----------------------------------------------------------------------- launch

    def launch(self, kernel: str, grid, block, args=(), shared: int = 0) -> LaunchResult:
        """Run ``kernel`` over ``grid`` x ``block`` threads until every thread exits, with
        ``shared`` bytes of dynamic shared memory per block (an access past them is an
        error, as on the GPU)."""
        if shared < 0:
            raise EmuError(f"dynamic shared memory of {shared} bytes")
        fn = self.module.functions.get(kernel)
        if fn is None or fn.kind != "entry":
            raise EmuError(f"no kernel {kernel!r} in the module")
        if len(args) != len(fn.params):
            raise EmuError(f"{kernel} takes {len(fn.params)} arguments, got {len(args)}")
        grid, bdim = _dim3(grid), _dim3(block)
        self._grid, self._block_dim = grid, bdim
        arg_bits = [encode(a, p.type) if not isinstance(a, np.generic) else
                    int(np.array([a]).view(f"u{a.itemsize}")[0]) for a, p in zip(args, fn.params)]
        threads: list[Thread] = []
        blocks = []
        for bz in range(grid[2]):
            for by in range(grid[1]):
                for bx in range(grid[0]):
                    blk = _Block((bx, by, bz), len(blocks),
                                 self.dynamic_shared_offset + shared if shared else self.shared_bytes)
                    blocks.append(blk)
                    n = 0
                    for tz in range(bdim[2]):
                        for ty in range(bdim[1]):
                            for tx in range(bdim[0]):
                                th = Thread(self, blk, (tx, ty, tz), n)
                                th.frames.append(self.new_frame(th, fn, arg_bits))
                                blk.threads.append(th)
                                threads.append(th)
                                n += 1
        steps = self._run(threads)
        regions: Counter = Counter()
        for th in threads:
            regions.update(th.regions)
        return LaunchResult(kernel, grid, bdim, steps, self.now,
                            np.array([th.executed for th in threads], dtype=np.int64), regions)

    def _run(self, threads: list) -> int:
        steps = 0
        rr = 0
        with np.errstate(all="ignore"):
            while True:
                runnable = [t for t in threads if t.status == "run"]
                if not runnable:
                    sleepers = [t for t in threads if t.status == "sleep"]
                    if sleepers:
                        self.now = max(self.now, min(t.wake_at for t in sleepers))
                        for t in sleepers:
                            if t.wake_at <= self.now:
                                t.status = "run"
                        continue
                    stuck = [t for t in threads if t.status == "wait"]
                    if stuck:
                        raise EmuHang(self._stuck_report("deadlock: every live thread waits", stuck))
                    return steps
                # Round-robin steps each runnable thread once per sweep; random picks one.
                order = runnable if self.policy == "round_robin" else [self.rng.choice(runnable)]
                for t in order:
                    if t.status != "run":
                        continue
                    self._step(t)
                    steps += 1
                    self.now += 1
                    if steps >= self.max_steps:
                        live = [t for t in threads if t.status != "done"]
                        raise EmuHang(self._stuck_report(
                            f"step budget of {self.max_steps} instructions spent", live))
                rr += 1
                if rr % 64 == 0:
                    for t in threads:
                        if t.status == "sleep" and t.wake_at <= self.now:
                            t.status = "run"

    def _step(self, t: Thread) -> None:
        f = t.frame
        if f.pc >= len(f.code.instrs):
            t.ret()  # falling off the end of a body returns
            return
        ins = f.code.instrs[f.pc]
        t.executed += 1
        t.regions[(f.code.fn.name, f.code.region[f.pc])] += 1
        if ins.pred is not None:
            reg, neg = ins.pred
            if bool(t.bits(reg) & 1) == neg:
                f.pc += 1
                return
        t.issuing = (f, f.pc)  # errors and hang reports name this instruction
        f.pc += 1
        row = OPS[ins.op]
        try:
            result = row.sem(t, ins)
        except EmuMemoryError as e:
            raise EmuError(f"{e}: {t.where()}") from None
        if result is BLOCKED:
            t.status = "wait" if t.status != "done" else t.status
        if t.status != "wait":
            t.issuing = None

    def _stuck_report(self, why: str, threads: list) -> str:
        # One entry per place threads are stuck at, so no place hides behind another's
        # threads: the first thread there, and which others share it.
        places: dict = {}
        for t in threads:
            key = (t.status, t.location() if t.frames else "(exited)")
            places.setdefault(key, []).append(t)
        shown = []
        for (status, _), group in list(places.items())[:8]:
            more = ""
            if len(group) > 1:
                names = ", ".join(str(t.tid) if t.block is group[0].block else
                                  f"block {t.block.ctaid} thread {t.tid}" for t in group[1:4])
                etc = ", ..." if len(group) > 4 else ""
                more = f" (+{len(group) - 1} more threads there: {names}{etc})"
            shown.append(f"[{status}] {group[0].where()}{more}")
        rest = f" (and {len(places) - 8} more places)" if len(places) > 8 else ""
        return f"{why}: {'; '.join(shown)}{rest}"
