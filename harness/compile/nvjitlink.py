"""PTX -> cubin in-process through nvJitLink (no GPU or driver needed), with a
content-addressed on-disk cache that keeps the verbose log next to the cubin."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from harness.errors import PollbenchError

from .arch import parse_arch
from .resources import Resources, parse_ptxas_log


class CompileError(PollbenchError):
    """nvJitLink/ptxas rejected the PTX.

    ``str(err)`` is one line: the first error, with the PTX source line it names.
    ``.log`` holds nvJitLink's whole error log, ``.line`` the 1-based PTX line number
    (or ``None``) and ``.source`` that line's text.
    """

    def __init__(self, message: str, *, log: str, arch: str, line: int | None = None,
                 source: str | None = None):
        super().__init__(message)
        self.log = log
        self.arch = arch
        self.line = line
        self.source = source


@dataclass
class CompiledModule:
    """A linked cubin with the log it came with and the resources parsed from it."""

    arch: str
    ptx: str
    cubin: bytes
    log: str
    resources: dict[str, Resources] = field(default_factory=dict)
    from_cache: bool = False

    @property
    def warnings(self) -> list[str]:
        """ptxas/nvJitLink warning lines, e.g. a ``.maxnreg`` raised to the arch minimum."""
        return [ln.strip() for ln in self.log.splitlines() if re.match(r"^(ptxas )?warning", ln)]


# The nvJitLink options we link with. verbose: the resource report. no_cache: nvJitLink's
# own cache can hand back a cubin without the verbose log; we cache ourselves instead.
_OPTIONS = {"verbose": True, "no_cache": True}
_CACHE_FORMAT = 1
_MAGIC = b"pollbench-cubin\n"


def nvjitlink_version() -> str:
    """The loaded nvJitLink library's version, ``"major.minor"`` (e.g. ``"13.5"``)."""
    from cuda.bindings import nvjitlink

    major, minor = nvjitlink.version()
    return f"{major}.{minor}"


@lru_cache(maxsize=1)
def _nvjitlink_identity() -> str:
    # nvjitlink.version() is only major.minor; patch builds change codegen. The loaded
    # library's file name and size tell builds apart without hashing ~100 MB.
    ident = nvjitlink_version()
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        path = os.path.realpath(load_nvidia_dynamic_lib("nvJitLink").abs_path)
        ident += f":{os.path.basename(path)}:{os.path.getsize(path)}"
    except Exception:  # noqa: BLE001 - identity is best effort; version alone still keys
        pass
    return ident


def default_cache_dir() -> Path:
    """``$POLLBENCH_CACHE`` if set, else ``~/.cache/pollbench/cubin``."""
    env = os.environ.get("POLLBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pollbench" / "cubin"


def cache_key(ptx: str, arch: str) -> str:
    """sha256 over the PTX, the arch, nvJitLink's identity and our link options."""
    doc = {"format": _CACHE_FORMAT, "ptx": ptx, "arch": arch,
           "nvjitlink": _nvjitlink_identity(), "options": _OPTIONS}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _encode_entry(cubin: bytes, log: str, arch: str) -> bytes:
    meta = json.dumps({"arch": arch, "log": log, "cubin_sha256": hashlib.sha256(cubin).hexdigest(),
                       "cubin_size": len(cubin)}).encode()
    return _MAGIC + len(meta).to_bytes(8, "little") + meta + cubin


def _decode_entry(blob: bytes) -> tuple[bytes, str] | None:
    """(cubin, log), or None when the entry is truncated or corrupt."""
    try:
        if not blob.startswith(_MAGIC):
            return None
        off = len(_MAGIC)
        n = int.from_bytes(blob[off:off + 8], "little")
        meta = json.loads(blob[off + 8:off + 8 + n])
        cubin = blob[off + 8 + n:]
        if (len(cubin) != meta["cubin_size"]
                or hashlib.sha256(cubin).hexdigest() != meta["cubin_sha256"]):
            return None
        return cubin, str(meta["log"])
    except (ValueError, KeyError, TypeError):
        return None


def _cache_read(path: Path) -> tuple[bytes, str] | None:
    try:
        return _decode_entry(path.read_bytes())
    except OSError:
        return None


def _cache_write(path: Path, blob: bytes) -> None:
    # Temp file in the same directory + os.replace: readers see the old entry, no entry,
    # or the whole new one; a crash mid-write leaves only a stray temp file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cubin")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        # A read-only or full cache must not fail the compile; say so once per call.
        warnings.warn(f"pollbench: cubin cache entry not written to {path.parent}: {e}",
                      RuntimeWarning, stacklevel=3)


_PTX_LINE_ERR = re.compile(r"^ptxas application ptx input, line (\d+); (?:error|fatal)\s*: (.*)$")
_PTXAS_FATAL = re.compile(r"^ptxas (?:fatal|error)\s*: (.*)$")
_JL_ERR = re.compile(r"^error\s*: (.*)$")


def _compile_error(exc: Exception, ptx: str, arch: str) -> CompileError:
    log = str(exc).replace("\x00", "").strip()
    lines = [ln.strip() for ln in log.splitlines()]
    # cuda.core puts nvJitLink's log after this marker in the exception text.
    lines = [ln.split("nvJitLink error log: ", 1)[-1] for ln in lines]
    errors: list[tuple[int | None, str]] = []
    for ln in lines:
        if m := _PTX_LINE_ERR.match(ln):
            errors.append((int(m.group(1)), m.group(2).strip()))
        elif (m := _PTXAS_FATAL.match(ln)) and "aborted due to errors" not in m.group(1):
            errors.append((None, "ptxas: " + m.group(1).strip()))
        elif m := _JL_ERR.match(ln):
            errors.append((None, "nvJitLink: " + m.group(1).strip()))
    if not errors:
        first = next((ln for ln in lines if ln), type(exc).__name__)
        return CompileError(f"nvJitLink failed for {arch}: {first}", log=log, arch=arch)
    lineno, msg = errors[0]
    source = None
    if lineno is not None:
        src_lines = ptx.splitlines()
        source = src_lines[lineno - 1].strip() if 0 < lineno <= len(src_lines) else None
        msg = f"ptxas: line {lineno}: {msg}"
        if source is not None:
            msg += f" \u2014 in: {source}"
    if len(errors) > 1:
        msg += f" (+{len(errors) - 1} more error{'s' if len(errors) > 2 else ''}, see .log)"
    return CompileError(msg, log=log, arch=arch, line=lineno, source=source)


def _link(ptx: str, arch: str) -> tuple[bytes, str]:
    from cuda.bindings.nvjitlink import nvJitLinkError
    from cuda.core import Linker, LinkerOptions, ObjectCode

    # from_ptx takes a str as a *file path*: the text must go in as bytes.
    obj = ObjectCode.from_ptx(ptx.encode())
    try:
        # PTX is compiled when added (inside Linker()), so most errors come from here;
        # unresolved symbols come from link().
        linker = Linker(obj, options=LinkerOptions(arch=arch, **_OPTIONS))
        cubin = linker.link("cubin").code
    except nvJitLinkError as e:
        raise _compile_error(e, ptx, arch) from None
    # The log ends in a NUL nvJitLink counted into its size.
    return bytes(cubin), linker.get_info_log().replace("\x00", "").rstrip()


_TARGET_RE = re.compile(r"^\.target\s+(sm_\d+)a\b", re.M)


def _own_target(ptx: str, arch: str) -> str:
    """``arch``, or the PTX's own arch-specific ``.target`` where that is ``arch``'s variant
    (a module with wgmma targets sm_90a: ``Module.target``; linking it for sm_90 fails)."""
    m = _TARGET_RE.search(ptx)
    return arch + "a" if m and m.group(1) == arch else arch


def compile_ptx(ptx: str, arch: str, *, cache: bool = True,
                cache_dir: str | os.PathLike | None = None) -> CompiledModule:
    """Link PTX text to a cubin for ``arch`` with nvJitLink, in-process.

    With ``cache`` (default) the cubin and its verbose log are kept under ``cache_dir``
    (default :func:`default_cache_dir`), keyed by :func:`cache_key`; a hit returns
    ``from_cache=True`` with the same resources. Corrupt entries are rebuilt. Raises
    :class:`CompileError` (first error and its PTX line) or ``ArchError``.
    """
    if not isinstance(ptx, str):
        raise TypeError(f"ptx must be str, not {type(ptx).__name__}")
    arch = _own_target(ptx, parse_arch(arch))
    path = None
    if cache:
        path = Path(cache_dir if cache_dir is not None else default_cache_dir())
        path = path.expanduser() / f"{cache_key(ptx, arch)}.cubin"
        hit = _cache_read(path)
        if hit is not None:
            cubin, log = hit
            return CompiledModule(arch, ptx, cubin, log, parse_ptxas_log(log), from_cache=True)
    cubin, log = _link(ptx, arch)
    if path is not None:
        _cache_write(path, _encode_entry(cubin, log, arch))
    return CompiledModule(arch, ptx, cubin, log, parse_ptxas_log(log), from_cache=False)
