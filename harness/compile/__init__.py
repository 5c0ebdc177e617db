"""PTX -> cubin through nvJitLink, in-process (no GPU or driver needed): resource
report from the verbose log, an on-disk cubin cache, and theoretical occupancy."""

from .arch import ArchError, ArchLimits, arch_limits, parse_arch
from .nvjitlink import (
    CompiledModule,
    CompileError,
    cache_key,
    compile_ptx,
    default_cache_dir,
    nvjitlink_version,
)
from .occupancy import Occupancy, OccupancyError, theoretical_occupancy
from .resources import Resources, parse_ptxas_log

__all__ = [
    "ArchError",
    "ArchLimits",
    "CompileError",
    "CompiledModule",
    "Occupancy",
    "OccupancyError",
    "Resources",
    "arch_limits",
    "cache_key",
    "compile_ptx",
    "default_cache_dir",
    "nvjitlink_version",
    "parse_arch",
    "parse_ptxas_log",
    "theoretical_occupancy",
]
