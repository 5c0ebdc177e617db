"""Random async programs, run on the emulator against a Python interpreter of the same
program, under every home a frame can have: registers (block_on inline), global memory
through the ABI (block_on direct), a run queue with type-erased polls (embassy indirect),
shared memory (smem_ready). The lowering's spill/reload dataflow decides what crosses each
suspension; a slot it forgot to store or reload gives a wrong value here."""

import numpy as np
import pytest

from executors import get_executor
from executors.base import LaunchArgs
from harness.backend import EmuBackend
from harness.futures import async_fn, yield_now
from harness.futures.lib import AsyncFn
from harness.ptx import Module
from harness.ptx.types import U32, U64

M32 = 0xFFFFFFFF
NLOCALS = 4
HOMES = ("block_on/inline", "block_on/direct", "embassy/indirect", "smem_ready/direct")


# ------------------------------------------------------------------ programs


def _program(rng, depth=0, children=()):
    """A list of statements: ("set", i, op, j, k|None, c), ("yield",), ("if", i, body),
    ("loop", n, body), ("await", child, i, j, dst), ("join", c1, c2, i, j, d1, d2)."""
    out = []
    for _ in range(int(rng.integers(2, 6))):
        r = rng.random()
        if r < 0.4:
            out.append(("set", *rng.integers(0, NLOCALS, 2), str(rng.choice(["add", "xor", "mul"])),
                        int(rng.integers(0, NLOCALS)) if rng.random() < 0.5 else None,
                        int(rng.integers(1, 1 << 16)) | 1))
        elif r < 0.6:
            out.append(("yield",))
        elif r < 0.7 and depth < 2:
            out.append(("if", int(rng.integers(0, NLOCALS)), _program(rng, depth + 1, children)))
        elif r < 0.8 and depth < 2:
            out.append(("loop", int(rng.integers(1, 4)), _program(rng, depth + 1, children)))
        elif children and r < 0.9:
            out.append(("await", int(rng.integers(0, len(children))),
                        *map(int, rng.integers(0, NLOCALS, 3))))
        elif len(children) > 1:
            out.append(("join", 0, 1, *map(int, rng.integers(0, NLOCALS, 4))))
    return out


def _interp(prog, loc, children):
    """Run ``prog`` on the list of u32 locals ``loc`` (the Python reference)."""
    for st in prog:
        if st[0] == "set":
            _, i, j, op, k, c = st
            b = loc[k] if k is not None else c
            loc[i] = {"add": loc[j] + b, "xor": loc[j] ^ b, "mul": loc[j] * (b | 1)}[op] & M32
        elif st[0] == "if":
            if loc[st[1]] & 1:
                _interp(st[2], loc, children)
        elif st[0] == "loop":
            for _ in range(st[1]):
                _interp(st[2], loc, children)
        elif st[0] == "await":
            _, c, i, j, dst = st
            loc[dst] = _child_value(children[c], loc[i], loc[j])
        elif st[0] == "join":
            _, c1, c2, i, j, d1, d2 = st
            a, b = _child_value(children[c1], loc[i], loc[j]), _child_value(children[c2], loc[j], loc[i])
            loc[d1], loc[d2] = a, b


def _child_value(child, x, y):
    loc = [x, y, (x ^ 0x9E3779B9) & M32, (y + 7) & M32]
    _interp(child, loc, ())
    return (loc[0] + loc[1] * 3 + loc[2] + loc[3]) & M32


# ------------------------------------------------------------------ the DSL


def _emit(f, prog, futs):
    for st in prog:
        if st[0] == "set":
            _, i, j, op, k, c = st
            a = f.get(f"l{j}")
            b = f.get(f"l{k}") if k is not None else f.mov(c, type=U32)
            v = {"add": lambda: f.add(a, b), "xor": lambda: f.xor(a, b, type=U32),
                 "mul": lambda: f.mul(a, f.or_(b, 1, type=U32))}[op]()
            f.set(f"l{i}", v)
        elif st[0] == "yield":
            f.await_(yield_now())
        elif st[0] == "if":
            odd = f.setp("ne", f.and_(f.get(f"l{st[1]}"), 1, type=U32), 0, type=U32)
            with f.if_(odd):
                _emit(f, st[2], futs)
        elif st[0] == "loop":
            n = f"n{id(st)}"
            f.local(n, U32)
            f.set(n, f.mov(0, type=U32))
            with f.loop() as lp:
                lp.break_if(f.setp("ge", f.get(n), st[1], type=U32))
                _emit(f, st[2], futs)
                f.set(n, f.add(f.get(n), 1))
        elif st[0] == "await":
            _, c, i, j, dst = st
            f.set(f"l{dst}", f.await_(futs[c](f.get(f"l{i}"), f.get(f"l{j}"))))
        elif st[0] == "join":
            _, c1, c2, i, j, d1, d2 = st
            a, b = f.join(futs[c1](f.get(f"l{i}"), f.get(f"l{j}")),
                          futs[c2](f.get(f"l{j}"), f.get(f"l{i}")))
            f.set(f"l{d1}", a)
            f.set(f"l{d2}", b)


def _child_future(name, prog):
    @async_fn(params=[("x", U32), ("y", U32)], output=U32, name=name)
    def child(f, x, y):
        for k in range(NLOCALS):
            f.local(f"l{k}", U32)
        f.set("l0", x)
        f.set("l1", y)
        f.set("l2", f.xor(x, 0x9E3779B9, type=U32))
        f.set("l3", f.add(y, 7))
        _emit(f, prog, ())
        s = f.add(f.add(f.get("l0"), f.mul(f.get("l1"), 3)), f.add(f.get("l2"), f.get("l3")))
        return s
    return child


def _build(seed):
    rng = np.random.default_rng(seed)
    child_progs = [_program(rng, 1), _program(rng, 1)]
    futs = [_child_future(f"fz{seed}_c{i}", p) for i, p in enumerate(child_progs)]
    prog = _program(rng, 0, child_progs)

    def body(f, task, args):
        for k in range(NLOCALS):
            f.local(f"l{k}", U32)
            f.set(f"l{k}", f.add(f.mul(task, 2654435761 + 2 * k), k * 977 + 1))
        _emit(f, prog, futs)
        for k in range(NLOCALS):
            addr = f.element_addr(f.arg("args"), f.mad(f.mov(k, type=U32), 64, f.arg("task")), 4)
            f.st("global", addr, f.get(f"l{k}"))
        return None

    root = AsyncFn(f"fz{seed}_root", [("task", U32), ("args", U64)], None, body)

    def reference(n):
        out = np.zeros((NLOCALS, n), np.uint32)
        for t in range(n):
            loc = [(t * (2654435761 + 2 * k) + k * 977 + 1) & M32 for k in range(NLOCALS)]
            _interp(prog, loc, child_progs)
            out[:, t] = loc
        return out

    return root, reference


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("home", HOMES)
def test_random_program_matches_its_interpretation(seed, home):
    executor, dispatch = home.split("/")
    root, reference = _build(seed)
    n = 64
    m = Module()
    ex = get_executor(executor)
    k = ex.build(m, root, dispatch)
    be = EmuBackend(max_steps=20_000_000)
    be.load(m)
    out = be.to_device(np.full(NLOCALS * n, 0xCDCDCDCD, np.uint32))
    ex.launch(be, k, 1, n, LaunchArgs.allocate(be, k, n, out))
    got = be.read(out, np.uint32, NLOCALS * n).reshape(NLOCALS, n)
    want = reference(n)
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"local {bad[0][0]} of task {bad[0][1]}: {got[tuple(bad[0])]} != {want[tuple(bad[0])]}"
