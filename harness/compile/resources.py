"""Resource report: per-function registers, spills, stack and shared memory from the
verbose log nvJitLink returns (ptxas's lines, then nvJitLink's own summary)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    """What ptxas allocated for one function.

    ``kind`` is ``"entry"`` (a kernel) or ``"func"``. ptxas reports registers and
    barriers for entries only, so those are ``None`` for a ``.func``. ``stack_frame``
    (spills live there) equals the driver's LOCAL_SIZE_BYTES. ``const0`` (bytes of
    constant bank 0, where kernel parameters live; not the driver's CONST_SIZE_BYTES)
    and ``local`` (nvJitLink's lmem) are ``None`` when the log does not give them.
    """

    name: str
    kind: str
    registers: int | None
    spill_stores: int
    spill_loads: int
    stack_frame: int
    shared_static: int
    barriers: int | None
    const0: int | None = None
    local: int | None = None
    own_registers: int | None = None  # the entry alone, without the .funcs it calls


_PTXAS_COMPILING = re.compile(r"^ptxas info\s*: Compiling (entry )?function '([^']+)'")
_PTXAS_PROPS = re.compile(r"^ptxas info\s*: Function properties for (\S+)\s*$")
_PTXAS_FRAME = re.compile(
    r"^ptxas\s+\.\s+(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_USED = re.compile(r"^ptxas info\s*: Used (\d+) registers(.*)$")
_JL_PROPS = re.compile(r"^info\s*: Function properties for '([^']+)':")
_JL_USED = re.compile(r"^info\s*: used (\d+) registers(.*)$")
_BARRIERS = re.compile(r"used (\d+) barriers")
_BYTES = re.compile(r"(\d+) bytes (smem|lmem|cmem\[0\])")
_STACK = re.compile(r"(\d+) stack")


def _fields(tail: str) -> dict[str, int]:
    out = {k: int(v) for v, k in _BYTES.findall(tail)}
    m = _BARRIERS.search(tail)
    if m:
        out["barriers"] = int(m.group(1))
    m = _STACK.search(tail)
    if m:
        out["stack"] = int(m.group(1))
    return out


def parse_ptxas_log(log: str) -> dict[str, Resources]:
    """Parse a verbose nvJitLink/ptxas info log into ``{function name: Resources}``.

    ptxas's lines are authoritative. nvJitLink's closing ``info : used ...`` lines only
    fill in what ptxas leaves out (cmem[0] on sm_90, lmem): their barrier count is not
    trustworthy (it varies between identical runs) and their smem includes the 1 KB
    the driver reserves per block on some arches but not others.
    """
    entries: set[str] = set()
    funcs: set[str] = set()
    order: list[str] = []
    rec: dict[str, dict] = {}
    jl: dict[str, dict] = {}
    current: str | None = None
    jl_current: str | None = None
    for raw in log.replace("\x00", "").splitlines():
        line = raw.rstrip()
        if m := _PTXAS_COMPILING.match(line):
            (entries if m.group(1) else funcs).add(m.group(2))
        elif m := _PTXAS_PROPS.match(line):
            current = m.group(1)
            if current not in rec:
                order.append(current)
                rec[current] = {}
        elif (m := _PTXAS_FRAME.match(line)) and current is not None:
            rec[current].update(stack_frame=int(m.group(1)), spill_stores=int(m.group(2)),
                                spill_loads=int(m.group(3)))
        elif (m := _PTXAS_USED.match(line)) and current is not None:
            rec[current].update(registers=int(m.group(1)), **_fields(m.group(2)))
        elif m := _JL_PROPS.match(line):
            jl_current = m.group(1)
        elif (m := _JL_USED.match(line)) and jl_current is not None:
            jl[jl_current] = {"registers": int(m.group(1)), **_fields(m.group(2))}
            jl_current = None
        elif line.startswith("ptxas info") and "Compile time" not in line:
            current = None  # a new section: stop attributing lines to the last function

    m = re.search(r"for 'sm_(\d+)", log)
    sm = int(m.group(1)) if m else 0
    out: dict[str, Resources] = {}
    for name in order:
        r, j = rec[name], jl.get(name, {})
        # Without a "Compiling entry function" line it is a .func: nvJitLink's ptxas
        # prints "Function properties for f" but no "Compiling function 'f'" for those.
        kind = "entry" if name in entries or (name not in funcs and "registers" in r) else "func"
        # An entry that calls .funcs (not inlined: the ABI call survives) needs registers and
        # stack for its whole call graph; ptxas's line counts the entry alone, nvJitLink's
        # closing summary counts all of it and is what the driver reports (NUM_REGS).
        own = r.get("registers")
        registers = own
        stack = r.get("stack_frame", 0)
        if kind == "entry" and "registers" in j:
            registers = max(j["registers"], own or 0)
            stack = max(stack, j.get("stack", 0))
        out[name] = Resources(
            name=name,
            kind=kind,
            registers=registers,
            spill_stores=r.get("spill_stores", 0),
            spill_loads=r.get("spill_loads", 0),
            stack_frame=stack,
            # ptxas leaves out module-scope .shared (allocated at link time): then only
            # nvJitLink's summary has it, and from sm_90 on that figure includes the 1 KB the
            # driver reserves per block (H100: nvJitLink 3072 / 41024 where cuFuncGetAttribute
            # says 2048 / 40000, for every kernel of our modules)
            shared_static=r.get("smem") or (
                max(0, j.get("smem", 0) - (1024 if sm >= 90 else 0)) if kind == "entry" else 0),
            barriers=r.get("barriers", 0 if kind == "entry" else None),
            const0=r.get("cmem[0]", j.get("cmem[0]")),
            local=r.get("lmem", j.get("lmem")),
            own_registers=own if kind == "entry" else None,
        )
    return out
