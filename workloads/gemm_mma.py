"""A bf16 GEMM tile on tensor cores with ``mma.sync`` (sm_80+): ``C = A @ B``, A (M x K) and
``Bt = B.T`` (N x K) row-major bf16, C (M x N) row-major f32 with f32 accumulation.

One tile code, three users: the plain kernel here (``gemm_mma_bf16``, its own parameters),
and the ``matmul`` workload's baseline kernel and task (``workloads/matmul.py``). A block of
8 warps computes a 128 x 128 tile, each warp 64 x 32 (4 x 4 ``mma.m16n8k16``); K advances
32 at a time through two shared-memory stages filled with ``cp.async``, whose completion
each thread signals on the stage's mbarrier (``cp.async.mbarrier.arrive.noinc``): waiting
for a stage is a test of the barrier's phase parity, which a kernel spins on and a task
awaits (a leaf future whose poll is that test). Fragments come from shared memory with
``ldmatrix``; a row's four 16-byte chunks are XOR-swizzled by the row (``_chunk_offset``)
so that the eight rows one ldmatrix matrix reads fall in eight different bank groups.
Shapes must be multiples of the tile (M, N of 128, K of 32). The portable tile (sm_80):
no wgmma, no TMA, two stages.

The code between waits keeps what crosses a wait in ``TileState`` (registers in a kernel,
frame slots in a task) and recomputes the rest (addresses) from the tile's inputs after it:
a future's lowering refuses a register live across a suspension that is not a slot.
"""

from __future__ import annotations

from harness.ptx import Builder, Module, Sym
from harness.ptx.types import F32, U32, U64

BM = BN = 128  # the block's tile
BK = 32  # K per stage: a 64-byte row of bf16, four 16-byte chunks
WARPS_M, WARPS_N = 2, 4
THREADS = 32 * WARPS_M * WARPS_N
WM, WN = BM // WARPS_M, BN // WARPS_N  # a warp's tile: 64 x 32
MI, NI = WM // 16, WN // 8  # its m16n8k16 tiles
STAGES = 2
STAGE_BYTES = BM * BK * 2  # one operand tile of one stage
CHUNKS = STAGE_BYTES // 16 // THREADS  # 16-byte cp.asyncs a thread issues per operand and stage
KERNEL = "gemm_mma_bf16"
PARAMS = (("a", U64), ("bt", U64), ("c", U64), ("m", U32), ("n", U32), ("k", U32))
ACC = MI * NI * 4  # f32 accumulators per thread


def blocks_for(m: int, n: int) -> int:
    """Blocks for an M x N output (one per BM x BN tile)."""
    return (m // BM) * (n // BN)


def shared_arrays(module: Module, prefix: str) -> tuple:
    """The tile's shared memory in ``module`` (declared once per prefix): both operands'
    stages and one mbarrier per stage. Returns their symbols (a, b, barriers)."""
    names = (f"{prefix}_a", f"{prefix}_b", f"{prefix}_bar")
    declared = {g.name for g in module.globals}
    if names[0] not in declared:
        Builder.shared(module, names[0], STAGES * STAGE_BYTES, 128)
        Builder.shared(module, names[1], STAGES * STAGE_BYTES, 128)
        Builder.shared(module, names[2], 8 * STAGES, 8)
    return tuple(Sym(n) for n in names)


class TileState:
    """The values a tile keeps across waits: ``kt`` (the K step), ``landed`` (the block
    agreed at the last step's barrier that stage ``kt`` has landed: 1 or 0) and the
    accumulators. ``get``/``set`` registers in a kernel; a task's are its frame slots."""

    def __init__(self, b, get, set_):
        self.b, self.get, self.set = b, get, set_

    @classmethod
    def registers(cls, b: Builder) -> "TileState":
        regs = {"kt": b.mov(0, type=U32), "landed": b.mov(0, type=U32)}
        regs.update({f"acc{i}": b.mov(0.0, type=F32) for i in range(ACC)})
        return cls(b, regs.__getitem__, lambda name, v: b.mov(v, dst=regs[name]))

    @classmethod
    def slots(cls, f) -> "TileState":
        for name in ("kt", "landed"):
            f.local(name, U32)
            f.set(name, f.mov(0, type=U32))
        for i in range(ACC):
            f.local(f"acc{i}", F32)
            f.set(f"acc{i}", f.mov(0.0, type=F32))
        return cls(f, f.get, f.set)


def _stage_bar(b, bar_sym, kt):
    """(the mbarrier of K step ``kt``'s stage, the parity of its phase for that step)."""
    bar = b.mad(b.and_(kt, STAGES - 1, type=U32), 8, b.mov(bar_sym, type=U32), type=U32)
    return bar, b.and_(b.shr(kt, STAGES.bit_length() - 1, type=U32), 1, type=U32)


def emit_tile(b, smem: tuple, inputs, state: TileState, wait, agree: bool = False) -> None:
    """The whole tile. ``inputs(b)`` gives what the tile reads, recomputed wherever needed
    (a dict: ``a``, ``bt``, ``c`` u64; ``n``, ``k``; ``tile``, the block's index over the
    output's BM x BN tiles, row-major; ``tid``, 0..THREADS-1 in the block). Barrier init,
    the K loop (load the next stage; ``wait(b, barrier, parity, landed)`` for this one;
    multiply; a block barrier before the stage is refilled), then the store. Every thread
    of the block runs it together.

    ``agree`` (cooperative tasks): the step's closing barrier is ``bar.red.and`` over each
    thread's test of the next stage's barrier, so the block leaves it agreeing whether
    that stage has landed (``landed``), and a wait that finds it so needs no barrier of
    its own: one block barrier a step, as the kernel's ``bar.sync``. Its barriers are then
    the non-aligned ``barrier.sync``/``barrier.red``: a run queue's worker reaches the poll
    from its own queue operations, where a warp need not be converged (an aligned barrier
    there faults on Hopper)."""
    a_sym, b_sym, bar_sym = smem
    t = inputs(b)
    with b.if_(b.setp("eq", t["tid"], 0, type=U32)):
        for s in range(STAGES):  # one arrival per thread and phase: .noinc arrives
            b.mbarrier_init(b.add(b.mov(bar_sym, type=U32), 8 * s, type=U32), THREADS)
    b.bar_sync(0, aligned=not agree)  # the barriers are initialised before any arrival
    _load_stage(b, t, smem, b.mov(0, type=U32), b.mov(0, type=U32))
    with b.loop() as lp:
        t = inputs(b)
        kt = state.get("kt")
        lp.break_if(b.setp("ge", kt, b.div(t["k"], BK, type=U32), type=U32))
        nxt = b.add(kt, 1, type=U32)
        with b.if_(b.setp("lt", nxt, b.div(t["k"], BK, type=U32), type=U32)):
            # the stage it fills was read in step kt - 1, before that step's barrier
            _load_stage(b, t, smem, b.and_(nxt, STAGES - 1, type=U32), nxt)
        wait(b, *_stage_bar(b, bar_sym, kt), state.get("landed"))
        t = inputs(b)
        kt = state.get("kt")
        acc = [state.get(f"acc{i}") for i in range(ACC)]
        _multiply(b, t, smem, b.and_(kt, STAGES - 1, type=U32), acc)
        for i, v in enumerate(acc):
            state.set(f"acc{i}", v)
        nxt = b.add(kt, 1, type=U32)
        if agree:  # nobody refills this stage while another warp still reads it, and
            # the block agrees whether the next one has landed
            landed = b.mbarrier_wait(*_stage_bar(b, bar_sym, nxt), parity=True)
            state.set("landed", b.selp(1, 0, b.bar_red("and", landed, aligned=False), type=U32))
        else:
            b.bar_sync(0)  # nobody refills this stage while another warp still reads it
        state.set("kt", nxt)
    t = inputs(b)
    # Every wait and arrival on the stage barriers came before the last step's closing
    # barrier: end them, so a worker that runs another tile may initialise them again
    # (mbarrier.init on a valid object is undefined).
    with b.if_(b.setp("eq", t["tid"], 0, type=U32)):
        for s in range(STAGES):
            b.mbarrier_inval(b.add(b.mov(bar_sym, type=U32), 8 * s, type=U32))
    _store(b, t, [state.get(f"acc{i}") for i in range(ACC)])


def _load_stage(b, t: dict, smem: tuple, stage, kt) -> None:
    """Queue this thread's 16-byte chunks of both operands' k-tile ``kt`` (``CHUNKS`` each) into
    ``stage``, then arrive on the stage's barrier when they have landed."""
    a_sym, b_sym, bar_sym = smem
    tiles_n = b.div(t["n"], BN, type=U32)
    by, bx = b.div(t["tile"], tiles_n, type=U32), b.rem(t["tile"], tiles_n, type=U32)
    for part in range(CHUNKS):
        chunk = b.add(t["tid"], THREADS * part, type=U32)
        row, c16 = b.div(chunk, 4, type=U32), b.rem(chunk, 4, type=U32)
        col = b.mad(kt, BK, b.mul(c16, 8, type=U32), type=U32)  # in elements
        off = _chunk_offset(b, row, c16)
        for src, tile, sym in ((t["a"], by, a_sym), (t["bt"], bx, b_sym)):
            elem = b.mad(b.mad(tile, BM, row, type=U32), t["k"], col, type=U32)
            dst = b.add(b.mad(stage, STAGE_BYTES, b.mov(sym, type=U32), type=U32), off,
                        type=U32)
            b.cp_async(dst, b.element_addr(src, elem, 2), 16, cache="cg")
    b.cp_async_mbarrier_arrive(b.mad(stage, 8, b.mov(bar_sym, type=U32), type=U32))


def _chunk_offset(b, row, chunk):
    """Byte offset of 16-byte ``chunk`` (0..3) of ``row`` in a stage: rows of 64 bytes, the
    chunk XORed with ``(row >> 1) & 3``. Eight consecutive rows (one ldmatrix matrix) then
    cover all eight 16-byte bank groups of a 128-byte line: no conflicts, where unswizzled
    rows 2 apart would share banks (four-way)."""
    swz = b.xor(chunk, b.and_(b.shr(row, 1, type=U32), 3, type=U32), type=U32)
    return b.mad(row, BK * 2, b.mul(swz, 16, type=U32), type=U32)


def _multiply(b, t: dict, smem: tuple, stage, acc: list) -> None:
    """``acc += A_stage x B_stage`` for this warp's WM x WN (accumulators in place)."""
    a_sym, b_sym, _ = smem
    lane, warp = b.and_(t["tid"], 31, type=U32), b.div(t["tid"], 32, type=U32)
    wm, wn = b.div(warp, WARPS_N, type=U32), b.rem(warp, WARPS_N, type=U32)
    g8, r8 = b.div(lane, 8, type=U32), b.rem(lane, 8, type=U32)
    abase = b.mad(stage, STAGE_BYTES, b.mov(a_sym, type=U32), type=U32)
    bbase = b.mad(stage, STAGE_BYTES, b.mov(b_sym, type=U32), type=U32)
    for kk in range(BK // 16):
        afrag = []
        for mi in range(MI):  # matrices: rows +0/+8 (bit 0 of g8), k +0/+8 (bit 1)
            row = b.add(b.mad(wm, WM, r8, type=U32),
                        b.add(mi * 16, b.mul(b.and_(g8, 1, type=U32), 8, type=U32), type=U32),
                        type=U32)
            chunk = b.add(2 * kk, b.shr(g8, 1, type=U32), type=U32)
            afrag.append(b.ldmatrix(b.add(abase, _chunk_offset(b, row, chunk), type=U32), 4))
        bfrag = []
        for pair in range(NI // 2):  # matrices: n-tile 2*pair (+1 for bit 1), k +0/+8 (bit 0)
            nrow = b.add(b.mad(wn, WN, r8, type=U32),
                         b.add(pair * 16, b.mul(b.shr(g8, 1, type=U32), 8, type=U32),
                               type=U32), type=U32)
            chunk = b.add(2 * kk, b.and_(g8, 1, type=U32), type=U32)
            d = b.ldmatrix(b.add(bbase, _chunk_offset(b, nrow, chunk), type=U32), 4)
            bfrag += [d[0:2], d[2:4]]
        for mi in range(MI):
            for ni in range(NI):
                c = acc[4 * (mi * NI + ni): 4 * (mi * NI + ni) + 4]
                b.mma_bf16(afrag[mi], bfrag[ni], c, dst=c)


def _store(b, t: dict, acc: list) -> None:
    lane, warp = b.and_(t["tid"], 31, type=U32), b.div(t["tid"], 32, type=U32)
    wm, wn = b.div(warp, WARPS_N, type=U32), b.rem(warp, WARPS_N, type=U32)
    tiles_n = b.div(t["n"], BN, type=U32)
    by, bx = b.div(t["tile"], tiles_n, type=U32), b.rem(t["tile"], tiles_n, type=U32)
    g, tig = b.div(lane, 4, type=U32), b.rem(lane, 4, type=U32)
    for mi in range(MI):
        for ni in range(NI):
            for i in range(4):
                row = b.add(b.mad(by, BM, b.mad(wm, WM, g, type=U32), type=U32),
                            mi * 16 + 8 * (i >= 2), type=U32)
                col = b.add(b.mad(bx, BN, b.mad(wn, WN, b.mul(tig, 2, type=U32), type=U32),
                                  type=U32), ni * 8 + (i & 1), type=U32)
                b.st("global", b.element_addr(t["c"], b.mad(row, t["n"], col, type=U32), 4),
                     acc[4 * (mi * NI + ni) + i], type=F32)


def spin_wait(b: Builder, bar, parity, landed=None) -> None:
    """A kernel's wait for a stage: spin on the barrier's phase parity."""
    with b.loop() as lp:
        lp.break_if(b.mbarrier_wait(bar, parity, parity=True))


def build(module: Module, name: str = KERNEL) -> str:
    """Emit the GEMM kernel into ``module``; returns its name. Launch with ``blocks_for(M,
    N)`` blocks of ``THREADS`` threads."""
    b = Builder.entry(module, name, PARAMS, maxntid=THREADS, minnctapersm=2)  # <= 128 regs
    regs = {"a": b.param("a"), "bt": b.param("bt"), "c": b.param("c"), "n": b.param("n"),
            "k": b.param("k"), "tile": b.special("ctaid.x"), "tid": b.special("tid.x")}
    emit_tile(b, shared_arrays(module, name), lambda _b: regs, TileState.registers(b),
              spin_wait)
    b.ret()
    return name
