"""GPU architecture names: which ones nvJitLink 13 accepts, and each one's SM limits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import PollbenchError


class ArchError(PollbenchError):
    """An architecture name that is malformed, unsupported, or has no known limits."""


# What nvJitLink 13.5 links to, probed one by one (sm_50..sm_72 and sm_101 give
# ERROR_UNSUPPORTED_ARCH; sm_8xa is refused by ptxas). 'a' = arch-specific features,
# 'f' = family-portable; both share the base arch's SM limits.
_SUPPORTED: dict[int, str] = {
    75: "", 80: "", 86: "", 87: "", 88: "", 89: "",
    90: "a",
    100: "af", 103: "af", 110: "af", 120: "af", 121: "af",
}

_ARCH_RE = re.compile(r"^(?:sm_?|compute_)?(\d{2,3})([af]?)$")
_DOTTED_RE = re.compile(r"^(\d{1,2})\.(\d)([af]?)$")


def _accepted() -> str:
    names = []
    for n, sufs in _SUPPORTED.items():
        names.append(f"sm_{n}" + "".join(f"/{s}" for s in sufs))
    return ", ".join(names)


def parse_arch(s: str) -> str:
    """Normalise an architecture name to nvJitLink's spelling, e.g. ``"sm_90a"``.

    Accepts ``"sm_90"``, ``"SM90"``, ``"90"``, ``"9.0"``, ``"compute_90"`` and the
    ``a``/``f`` suffixed forms where the arch has them. Raises :class:`ArchError`,
    naming the accepted set, for anything nvJitLink 13 cannot target.
    """
    if not isinstance(s, str):
        raise ArchError(f"architecture must be a string like 'sm_90', got {s!r}")
    text = s.strip().lower()
    m = _ARCH_RE.match(text)
    if m:
        num, suf = int(m.group(1)), m.group(2)
    else:
        m = _DOTTED_RE.match(text)
        if not m:
            raise ArchError(f"unknown architecture {s!r}; accepted: {_accepted()} "
                            "(also written '90', '9.0', 'sm90')")
        num, suf = int(m.group(1)) * 10 + int(m.group(2)), m.group(3)
    if num not in _SUPPORTED:
        raise ArchError(f"architecture {s!r} is not supported by nvJitLink 13; "
                        f"accepted: {_accepted()}")
    if suf and suf not in _SUPPORTED[num]:
        raise ArchError(f"architecture {s!r}: sm_{num} has no '{suf}' variant; "
                        f"accepted: {_accepted()}")
    return f"sm_{num}{suf}"


@dataclass(frozen=True)
class ArchLimits:
    """Per-SM resource limits of one compute capability (CUDA Programming Guide,
    'Technical Specifications per Compute Capability', and cuda_occupancy.h)."""

    max_warps_per_sm: int
    max_blocks_per_sm: int
    smem_per_sm: int            # bytes, largest carveout (the default preference)
    smem_per_block_optin: int   # bytes, cuFuncSetAttribute(MAX_DYNAMIC_SHARED...) ceiling
    smem_reserved_per_block: int  # bytes the driver keeps per block (sm_80+)
    smem_granularity: int       # bytes; cudaOccSMemAllocationGranularity
    regs_per_sm: int = 65536
    regs_per_block: int = 65536
    reg_granularity: int = 256  # registers per warp are allocated in units of 256
    max_regs_per_thread: int = 255
    sub_partitions: int = 4     # registers are split over 4 SM sub-partitions
    max_threads_per_block: int = 1024
    warp_size: int = 32

    @property
    def max_threads_per_sm(self) -> int:
        """Resident threads per SM."""
        return self.max_warps_per_sm * self.warp_size


_KB = 1024
_LIMITS: dict[int, ArchLimits] = {
    75: ArchLimits(32, 16, 64 * _KB, 64 * _KB, 0, 256),
    80: ArchLimits(64, 32, 164 * _KB, 163 * _KB, _KB, 128),
    86: ArchLimits(48, 16, 100 * _KB, 99 * _KB, _KB, 128),
    87: ArchLimits(48, 16, 164 * _KB, 163 * _KB, _KB, 128),
    89: ArchLimits(48, 24, 100 * _KB, 99 * _KB, _KB, 128),
    90: ArchLimits(64, 32, 228 * _KB, 227 * _KB, _KB, 128),
    100: ArchLimits(64, 32, 228 * _KB, 227 * _KB, _KB, 128),
    103: ArchLimits(64, 32, 228 * _KB, 227 * _KB, _KB, 128),
    120: ArchLimits(48, 24, 100 * _KB, 99 * _KB, _KB, 128),
}
# sm_88, sm_110 and sm_121 link, but we have no verified limits for them: an
# occupancy figure from guessed limits would be believed, so they raise instead.


def arch_number(arch: str) -> int:
    """The numeric part of an arch name: ``"sm_90a"`` -> 90."""
    return int(re.sub(r"[^0-9]", "", parse_arch(arch)))


def arch_limits(arch: str) -> ArchLimits:
    """The SM limits for ``arch``; :class:`ArchError` where none are known."""
    num = arch_number(arch)
    try:
        return _LIMITS[num]
    except KeyError:
        known = ", ".join(f"sm_{n}" for n in _LIMITS)
        raise ArchError(f"no occupancy limits known for sm_{num}; known: {known}") from None
