"""Litmus tests of the PTX memory model: MP, SB, LB, CoRR, IRIW and 2+2W, each unordered
(``.relaxed``), with fences (``fence.acq_rel``, ``fence.sc``) and with ``st.release`` /
``ld.acquire``, at ``.cta`` and ``.gpu`` scope, with an instance's threads in one warp, in
different warps of one block, or in different blocks.

One kernel per configuration runs many instances at once, GPUHarbor style:
- **thread randomisation**: which threads form an instance is drawn afresh for every launch
  (a random permutation per role inside the placement's domain: a warp, a block, the grid);
- **location randomisation**: every location of every instance has its own 128-byte line,
  drawn at random for every launch;
- **memory stress**: extra blocks stream stores and loads over a scratch buffer meanwhile;
- **a start line**: each test block announces itself and spins (bounded) until every test
  block has, so the roles of an instance overlap in time even across blocks.

Every outcome is counted. An ordered variant whose weak outcome the model forbids (the scope
including every thread of the instance) fails when the weak outcome is seen; weak outcomes
of unordered or scope-mismatched variants are reported, not failures.

Which variants forbid the weak outcome (PTX ISA memory model; C++ RC11 agrees):
MP and LB: release/acquire or either fence; SB, IRIW and 2+2W: ``fence.sc`` only (release/
acquire does not order a store before a later load, IRIW's readers may disagree without an
SC fence, 2+2W has no reads to synchronise through); CoRR: every variant (coherence holds
for morally strong accesses, i.e. when the scope includes both threads).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from harness.errors import PollbenchError
from harness.ptx import Builder, Module
from harness.ptx.types import B32, U32, U64

SCOPES = ("cta", "gpu")
PLACEMENTS = ("warp", "cta", "grid")  # an instance's threads: one warp, one block, blocks
VARIANTS = ("relaxed", "acq_rel", "sc", "rel_acq")
LINE_WORDS = 32  # one location per 128-byte line
SMEM_WORDS = 1024  # a block's shared locations (instances per block x locations)
STRESS_ITERS = 256
START_SPINS = 1 << 16  # bounded: blocks that are not co-resident only start later
EMU_START_SPINS = 64  # the emulator runs a block's threads in turn: a short line
DEFAULT_ITERATIONS = 1_000_000
QUICK_ITERATIONS = 10_000
PARAMS = (("mem", U64), ("out", U64), ("perm", U64), ("locs", U64), ("start", U64),
          ("ntest", U32), ("ninst", U32), ("scratch", U64), ("scratch_words", U32),
          ("spins", U32))


@dataclass(frozen=True)
class Litmus:
    """A litmus test: each thread's program, the weak outcome (registers in order, then the
    final values of ``final``) and the variants under which the model forbids it.

    Ops: ``("st", loc, value)`` / ``("ld", loc, reg)`` take the variant's ordering;
    ``("st.weak", loc, value)`` / ``("ld.weak", loc, reg)`` are plain (data) accesses;
    ``("rmw", loc, reg, op, value)`` is ``atom.<op>``, acq_rel under every ordered variant
    (relaxed under ``relaxed``), its old value into ``reg`` (None: dropped). ``space``:
    where the locations live (shared: one block's, so no grid placement)."""

    name: str
    threads: tuple
    weak: tuple
    forbidden_under: frozenset
    final: tuple = ()
    what: str = ""
    space: str = "global"
    variants: tuple = VARIANTS

    @property
    def placements(self) -> tuple:
        return PLACEMENTS if self.space == "global" else ("warp", "cta")

    @property
    def locations(self) -> tuple:
        return tuple(dict.fromkeys(op[1] for ops in self.threads for op in ops))

    @property
    def registers(self) -> int:
        return 1 + max((op[2] for ops in self.threads for op in ops
                        if op[0] in ("ld", "ld.weak", "rmw") and op[2] is not None), default=-1)

    @property
    def outcome_size(self) -> int:
        return self.registers + len(self.final)


TESTS = {t.name: t for t in (
    Litmus("MP", ((("st", "x", 1), ("st", "y", 1)), (("ld", "y", 0), ("ld", "x", 1))),
           (1, 0), frozenset({"acq_rel", "sc", "rel_acq"}),
           what="message passing: the flag seen, the data not"),
    Litmus("SB", ((("st", "x", 1), ("ld", "y", 0)), (("st", "y", 1), ("ld", "x", 1))),
           (0, 0), frozenset({"sc"}), what="store buffering: each load misses the other's store"),
    Litmus("LB", ((("ld", "x", 0), ("st", "y", 1)), (("ld", "y", 1), ("st", "x", 1))),
           (1, 1), frozenset({"acq_rel", "sc", "rel_acq"}),
           what="load buffering: each load sees the other thread's later store"),
    Litmus("CoRR", ((("st", "x", 1),), (("ld", "x", 0), ("ld", "x", 1))),
           (1, 0), frozenset(VARIANTS), what="read-read coherence: a newer value, then an older"),
    Litmus("IRIW", ((("st", "x", 1),), (("st", "y", 1),), (("ld", "x", 0), ("ld", "y", 1)),
                    (("ld", "y", 2), ("ld", "x", 3))),
           (1, 0, 1, 0), frozenset({"sc"}),
           what="independent reads of independent writes: readers disagree on their order"),
    Litmus("2+2W", ((("st", "x", 1), ("st", "y", 2)), (("st", "y", 1), ("st", "x", 2))),
           (1, 1), frozenset({"sc"}), final=("x", "y"),
           what="two writers: both first stores end up last"),
    # smem_ready's hand-off of a task's frame (executors/smem_ready.py, run_task): plain
    # frame stores, then an acq_rel atomic on the task's state word; the next poller's
    # acq_rel atomic on that word, then plain frame loads. All in shared memory, .cta.
    Litmus("MP+atom.shared", ((("st.weak", "data", 1), ("rmw", "flag", None, "exch", 1)),
                              (("rmw", "flag", 0, "or", 0), ("ld.weak", "data", 1))),
           (1, 0), frozenset({"acq_rel"}), space="shared", variants=("relaxed", "acq_rel"),
           what="smem_ready's frame hand-off: flag seen through the atomic, frame not"),
)}


def scope_covers(scope: str, placement: str) -> bool:
    """Whether ``scope`` includes every thread of an instance placed as ``placement``."""
    return scope == "gpu" or placement in ("warp", "cta")


def forbidden(test: Litmus, variant: str, scope: str, placement: str) -> bool:
    """Whether the model forbids ``test``'s weak outcome in this configuration."""
    return variant in test.forbidden_under and scope_covers(scope, placement)


def kernel_name(test: Litmus, variant: str, scope: str, placement: str) -> str:
    """The PTX name of one configuration's kernel."""
    ident = re.sub(r"\W", "_", test.name.replace("+", "p"))
    return f"litmus_{ident}_{variant}_{scope}_{placement}"


# ------------------------------------------------------------------------- device side


def _thread_ops(b: Builder, test: Litmus, ops, variant: str, scope: str, addr: dict, out, inst):
    """One thread's program with ``variant``'s orderings; loaded registers go to ``out``."""
    nregs, space = test.registers, test.space
    fences = variant in ("acq_rel", "sc") and not any(op[0] == "rmw" for op in ops)
    for k, op in enumerate(ops):
        if k and fences:
            b.fence(variant, scope)
        kind, loc = op[0], addr[op[1]]
        v = None
        if kind == "st":
            sem = "release" if variant == "rel_acq" else "relaxed"
            b.st(space, loc, b.mov(op[2], type=U32), type=U32, sem=sem, scope=scope)
        elif kind == "st.weak":
            b.st(space, loc, b.mov(op[2], type=U32), type=U32)
        elif kind == "ld":
            sem = "acquire" if variant == "rel_acq" else "relaxed"
            v = b.ld(space, loc, U32, sem=sem, scope=scope)
        elif kind == "ld.weak":
            v = b.ld(space, loc, U32)
        else:  # rmw
            sem = "relaxed" if variant == "relaxed" else "acq_rel"
            t = B32 if op[3] in ("exch", "or", "and", "xor", "cas") else U32
            v = b.atom(space, op[3], loc, b.mov(op[4], type=t), type=t, sem=sem, scope=scope)
        if v is not None and op[2] is not None:
            b.st("global", b.element_addr(out, b.mad(inst, nregs, op[2], type=U32), 4), v,
                 type=U32)


def _stress(b: Builder) -> None:
    """A stress block: streams stores and loads over the scratch buffer, then leaves."""
    scratch, words = b.param("scratch"), b.param("scratch_words")
    seed = b.mad(b.special("ctaid.x"), 7919, b.mul(b.special("tid.x"), 31, type=U32), type=U32)
    i = b.mov(0, type=U32)
    with b.loop() as lp:
        lp.break_if(b.setp("ge", i, STRESS_ITERS, type=U32))
        w = b.rem(b.mad(i, 977, seed, type=U32), words, type=U32)
        a = b.element_addr(scratch, w, 4)
        b.st("global", a, b.add(b.ld("global", a, U32), 1, type=U32), type=U32)
        b.add(i, 1, dst=i)
    b.ret()


def _start_line(b: Builder) -> None:
    """Each test block announces itself; every thread spins (bounded) until all have."""
    start, ntest = b.param("start"), b.param("ntest")
    with b.if_(b.setp("eq", b.special("tid.x"), 0, type=U32)):
        b.red("global", "add", start, b.mov(1, type=U32), type=U32, sem="relaxed", scope="gpu")
    spins = b.mov(0, type=U32)
    with b.loop() as lp:
        seen = b.ld("global", start, U32, sem="relaxed", scope="gpu")
        lp.break_if(b.setp("ge", seen, ntest, type=U32))
        b.add(spins, 1, dst=spins)
        lp.break_if(b.setp("ge", spins, b.param("spins"), type=U32))


def build_kernel(m: Module, test: Litmus, variant: str, scope: str, placement: str) -> str:
    """Emit the kernel of one configuration into ``m``; returns its name.

    Thread -> (role, slot in its domain); the instance is the domain's base plus
    ``perm[role * ninst + domain base + slot]`` (a per-launch random permutation of the
    domain's slots, per role); its locations are ``locs[instance * nlocs + k]`` words."""
    name = kernel_name(test, variant, scope, placement)
    R, nlocs = len(test.threads), len(test.locations)
    b = Builder.entry(m, name, PARAMS)
    tid, ctaid, ntid = b.special("tid.x"), b.special("ctaid.x"), b.special("ntid.x")
    with b.if_(b.setp("ge", ctaid, b.param("ntest"), type=U32)):
        _stress(b)
    smem = None
    if test.space == "shared":  # this block's locations: zeroed, then every thread waits
        smem = b.mov(Builder.shared(m, f"{name}_smem", 4 * SMEM_WORDS, 16), type=U32)
        w = b.mov(tid, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("ge", w, SMEM_WORDS, type=U32))
            b.st("shared", b.mad(w, 4, smem, type=U32), b.mov(0, type=U32), type=U32)
            b.add(w, ntid, dst=w)
        b.bar_sync(0)
    _start_line(b)
    lane = b.and_(tid, 31, type=U32)
    if placement == "warp":
        role, slot = b.rem(lane, R, type=U32), b.div(lane, R, type=U32)
        base = b.mul(b.div(b.global_index(), 32, type=U32), 32 // R, type=U32)
    elif placement == "cta":
        warp = b.div(tid, 32, type=U32)
        role = b.rem(warp, R, type=U32)
        slot = b.mad(b.div(warp, R, type=U32), 32, lane, type=U32)
        base = b.mul(ctaid, b.div(ntid, R, type=U32), type=U32)
    else:
        role = b.rem(ctaid, R, type=U32)
        slot = b.mad(b.div(ctaid, R, type=U32), ntid, tid, type=U32)
        base = b.mov(0, type=U32)
    ninst = b.param("ninst")
    pidx = b.mad(role, ninst, b.add(base, slot, type=U32), type=U32)
    inst = b.add(base, b.ld("global", b.element_addr(b.param("perm"), pidx, 4), U32), type=U32)
    mem, locs = b.param("mem"), b.param("locs")
    addr = {}
    for k, loc in enumerate(test.locations):
        w = b.ld("global", b.element_addr(locs, b.mad(inst, nlocs, k, type=U32), 4), U32)
        addr[loc] = b.element_addr(mem, w, 4) if smem is None else b.mad(w, 4, smem, type=U32)
    out = b.param("out")
    for r, ops in enumerate(test.threads):
        with b.if_(b.setp("eq", role, r, type=U32)):
            _thread_ops(b, test, ops, variant, scope, addr, out, inst)
    b.ret()
    return name


def build_module(arch: str, configs) -> Module:
    """Every configuration's kernel in one module."""
    m = Module(arch=arch)
    for test, variant, scope, placement in configs:
        build_kernel(m, test, variant, scope, placement)
    return m


def all_configs(tests=None) -> list:
    """(test, variant, scope, placement) for every test (or those named), in a stable order."""
    chosen = [TESTS[t] for t in tests] if tests else list(TESTS.values())
    return [(t, v, s, p) for t in chosen for v in t.variants for s in SCOPES
            for p in t.placements]


# --------------------------------------------------------------------------- host side


@dataclass
class Geometry:
    """Where the instances run: ``blocks`` test blocks of ``block`` threads, then
    ``stress_blocks``."""

    blocks: int
    block: int
    stress_blocks: int = 0

    def instances(self, threads: int) -> int:
        return self.blocks * self.block // threads


def geometry_for(backend, test: Litmus, placement: str, quick: bool = False) -> Geometry:
    """Test blocks that fit on the card at once (two of 256 threads per SM), plus one stress
    block per SM; on the emulator a few small blocks."""
    R = len(test.threads)
    if backend.name != "gpu":
        block = 32 * R if placement == "cta" else 32
        return Geometry(blocks=R if placement == "grid" else 2, block=block, stress_blocks=1)
    sms = backend.rt.sm_count
    blocks = 2 * sms
    blocks -= blocks % R
    return Geometry(blocks=blocks, block=256, stress_blocks=sms)


def _permutations(rng, groups: int, size: int) -> np.ndarray:
    """``groups`` independent permutations of ``range(size)``, one row each."""
    return np.argsort(rng.random((groups, size)), axis=1).astype(np.uint32)


def _tables(rng, test: Litmus, placement: str, geo: Geometry):
    """This launch's role permutations (``R x ninst``) and locations (``ninst x nlocs``)."""
    R, nlocs = len(test.threads), len(test.locations)
    ninst = geo.instances(R)
    per = {"warp": 32 // R, "cta": geo.block // R, "grid": ninst}[placement]
    perm = np.concatenate([_permutations(rng, ninst // per, per).ravel() for _ in range(R)])
    if test.space == "shared":  # word indices inside each block's array, shuffled per block
        inst_per_block = geo.block // R
        locs = _permutations(rng, geo.blocks, inst_per_block * nlocs).reshape(ninst, nlocs)
    else:
        locs = (rng.permutation(ninst * nlocs).astype(np.uint32) * LINE_WORDS).reshape(ninst, nlocs)
    return perm, locs


@dataclass
class LitmusResult:
    """Every outcome's count for one configuration, and the verdict."""

    test: str
    variant: str
    scope: str
    placement: str
    iterations: int
    outcomes: dict = field(default_factory=dict)  # "r0,r1,..." -> count
    weak: int = 0
    forbidden: bool = False

    @property
    def verdict(self) -> str:
        """"pass" (forbidden, not seen), "FAIL: ..." (forbidden, seen), or an allowed count."""
        if self.weak and self.forbidden:
            return "FAIL: forbidden outcome seen"
        if self.forbidden:
            return "pass"
        return "weak seen (allowed)" if self.weak else "weak not seen (allowed)"

    @property
    def failed(self) -> bool:
        return self.forbidden and self.weak > 0

    def to_dict(self) -> dict:
        """The row of the conform document."""
        return {"test": self.test, "variant": self.variant, "scope": self.scope,
                "placement": self.placement, "iterations": self.iterations,
                "outcomes": self.outcomes, "weak": self.weak, "forbidden": self.forbidden,
                "verdict": self.verdict}


def run_config(backend, test: Litmus, variant: str, scope: str, placement: str,
               iterations: int, rng, geo: Geometry | None = None) -> LitmusResult:
    """Run one configuration (its kernel already loaded) for at least ``iterations``
    instances; count every outcome."""
    geo = geo or geometry_for(backend, test, placement)
    R, nlocs, nregs = len(test.threads), len(test.locations), test.registers
    ninst = geo.instances(R)
    name = kernel_name(test, variant, scope, placement)
    mem_bytes, out_bytes = 4 * ninst * nlocs * LINE_WORDS, 4 * max(1, ninst * nregs)
    mem, out, start = backend.alloc(mem_bytes), backend.alloc(out_bytes), backend.alloc(4)
    perm_p, locs_p = backend.alloc(4 * R * ninst), backend.alloc(4 * ninst * nlocs)
    scratch_words = 1 << 16
    scratch = backend.alloc(4 * scratch_words)
    backend.zero(scratch, 4 * scratch_words)
    spins = START_SPINS if backend.name == "gpu" else EMU_START_SPINS
    counts: dict = {}
    done = 0
    base = 3  # every observed value is 0, 1 or 2
    while done < iterations:
        perm, locs = _tables(rng, test, placement, geo)
        backend.write(perm_p, perm)
        backend.write(locs_p, locs)
        backend.zero(mem, mem_bytes)
        backend.poison(out, out_bytes)
        backend.zero(start, 4)
        args = [mem, out, perm_p, locs_p, start, np.uint32(geo.blocks), np.uint32(ninst),
                scratch, np.uint32(scratch_words), np.uint32(spins)]
        if done == 0:  # the first launch under the watchdog: every loop here is bounded,
            backend.launch(name, geo.blocks + geo.stress_blocks, geo.block, args, checked=True)
        else:  # so the later ones are queued plainly (the read below waits for them)
            backend.enqueue(name, geo.blocks + geo.stress_blocks, geo.block, args)
        values = [backend.read(out, np.uint32, ninst * nregs).reshape(ninst, nregs)] \
            if nregs else []
        if test.final:
            words = backend.read(mem, np.uint32, ninst * nlocs * LINE_WORDS)
            idx = [test.locations.index(loc) for loc in test.final]
            values.append(words[locs[:, idx]])
        v = np.concatenate(values, axis=1).astype(np.int64)
        if (v > 2).any():
            raise PollbenchError(f"{name}: an instance was not run (its outcome holds "
                                 f"{int(v.max()):#x}): the geometry does not cover it")
        codes = (v * base ** np.arange(v.shape[1])).sum(axis=1)
        for code, n in zip(*np.unique(codes, return_counts=True)):
            counts[int(code)] = counts.get(int(code), 0) + int(n)
        done += ninst
    weak_code = int(sum(w * base ** k for k, w in enumerate(test.weak)))
    outcomes = {",".join(str(code // base ** k % base) for k in range(test.outcome_size)): n
                for code, n in sorted(counts.items())}
    return LitmusResult(test.name, variant, scope, placement, done, outcomes,
                        counts.get(weak_code, 0), forbidden(test, variant, scope, placement))


def run_all(backend, iterations: int = DEFAULT_ITERATIONS, seed: int = 0, tests=None,
            on_result=None) -> list:
    """Every configuration (or those of ``tests``), one module; a ``LitmusResult`` each."""
    configs = all_configs(tests)
    backend.load(build_module(getattr(backend, "arch", "sm_90"), configs))
    rng = np.random.default_rng(seed)
    results = []
    for cfg in configs:
        r = run_config(backend, *cfg, iterations, rng)
        results.append(r)
        if on_result:
            on_result(r)
    return results
