"""Theoretical occupancy without a GPU: cuda_occupancy.h's rules applied to a resource
report and the arch's limits (cudaOccMaxActiveBlocksPerMultiprocessor, default cache
preference, partitioned global caching off).

Checked against cuOccupancyMaxActiveBlocksPerMultiprocessor on an H100 (driver
580.159.04): 15 kernels (8..255 registers, 16 B..48 KB static smem, 0..16 barriers) x
14 block sizes x 7 dynamic smem sizes, 1470 cases, no difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import PollbenchError

from .arch import arch_limits, arch_number
from .resources import Resources


class OccupancyError(PollbenchError):
    """Occupancy asked for something that cannot launch at all (bad block size, a .func)."""


@dataclass
class Occupancy:
    """Resident blocks and warps per SM for one kernel at one launch configuration.

    ``limiter`` names the resource that caps ``blocks_per_sm``; on a tie the order is
    warps, registers, shared memory, barriers, blocks (so a full SM says "warps").
    ``limits`` holds each resource's own cap in blocks per SM.
    """

    blocks_per_sm: int
    active_warps_per_sm: int
    max_warps_per_sm: int
    fraction: float
    limiter: str
    limits: dict[str, int] = field(default_factory=dict)


_UNLIMITED = 1 << 30


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def theoretical_occupancy(res: Resources, block_size: int, arch: str,
                          dynamic_smem: int = 0) -> Occupancy:
    """Blocks and warps per SM that ``res`` allows at ``block_size`` threads on ``arch``.

    Shared memory per block is static + ``dynamic_smem`` + the block's reserved 1 KB
    (sm_80+), rounded to the allocation unit. The per-block ceiling assumed is the
    opt-in maximum (the launcher must set MAX_DYNAMIC_SHARED_SIZE_BYTES above 48 KB).
    A kernel that cannot fit one block gets ``blocks_per_sm == 0``.
    """
    lim = arch_limits(arch)
    if res.kind != "entry" or res.registers is None:
        raise OccupancyError(f"occupancy needs a kernel (.entry); {res.name!r} is a {res.kind}")
    if not 0 < block_size <= lim.max_threads_per_block:
        raise OccupancyError(f"block size {block_size} outside 1..{lim.max_threads_per_block}")
    if dynamic_smem < 0:
        raise OccupancyError(f"dynamic shared memory {dynamic_smem} is negative")

    warps_per_block = -(-block_size // lim.warp_size)

    # Warps: whole blocks of warps that fit in the SM's warp slots.
    by_warps = lim.max_warps_per_sm // warps_per_block

    # Registers: allocated per warp in units of 256, per sub-partition (cudaOcc...RegsLimit).
    regs_per_warp = _round_up(res.registers * lim.warp_size, lim.reg_granularity)
    if (res.registers > lim.max_regs_per_thread
            or regs_per_warp * _round_up(warps_per_block, lim.sub_partitions) > lim.regs_per_block):
        by_regs = 0
    elif regs_per_warp == 0:
        by_regs = _UNLIMITED
    else:
        warps_per_sub = (lim.regs_per_sm // lim.sub_partitions) // regs_per_warp
        by_regs = warps_per_sub * lim.sub_partitions // warps_per_block

    # Shared memory: the reserved 1 KB counts against the SM like the kernel's own.
    smem = _round_up(res.shared_static + lim.smem_reserved_per_block + dynamic_smem,
                     lim.smem_granularity)
    if smem > lim.smem_per_block_optin + lim.smem_reserved_per_block:
        by_smem = 0
    else:
        by_smem = lim.smem_per_sm // smem if smem else _UNLIMITED

    by_blocks = lim.max_blocks_per_sm

    limits = {"warps": by_warps, "registers": by_regs, "shared memory": by_smem}
    # sm_90+: 2 x max-blocks named barriers per SM (cudaOccMaxBlocksPerSMBlockBarrierLimit);
    # a kernel using all 16 gets 4 blocks per SM on an H100, as the driver says too.
    if arch_number(arch) >= 90 and res.barriers:
        limits["barriers"] = by_blocks * 2 // res.barriers
    limits["blocks"] = by_blocks

    blocks = min(limits.values())
    limiter = next(k for k, v in limits.items() if v == blocks)
    active = blocks * warps_per_block
    return Occupancy(
        blocks_per_sm=blocks,
        active_warps_per_sm=active,
        max_warps_per_sm=lim.max_warps_per_sm,
        fraction=active / lim.max_warps_per_sm,
        limiter=limiter,
        limits={k: v for k, v in limits.items() if v != _UNLIMITED},
    )
