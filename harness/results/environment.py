"""The ``environment`` block of a results document: where and with what a run was made.

Everything here is best effort: a figure that cannot be had (no NVML, no git checkout, a
package not installed) is ``None``, never an exception.

``setup.py`` loads this file by path to record the commit at build time, so what it imports
at module level must stay in the standard library.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
import socket
from importlib import metadata
from pathlib import Path

PACKAGES = ("cuda-core", "cuda-bindings", "nvidia-nvjitlink", "numpy", "nvidia-ml-py")

_SHA = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # harness/results/ -> the tree holding harness/
BUILD_INFO = "harness/_build_info.json"  # written by setup.py's build_py; not in git


def utc_now() -> str:
    """``2026-11-28T01:02:03Z``: the run's start, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def git_sha(root: Path | None = None) -> str | None:
    """The commit pollbench at ``root`` (default: the tree it runs from) was made from:
    when ``root`` is a git checkout, its HEAD, read from ``.git`` without running git
    (worktrees, ``.git`` a file, and packed refs are followed; uncommitted changes are not
    detected); else the commit recorded at install time in ``root/harness/_build_info.json``
    (an installed wheel has no ``.git``); else None."""
    root = SOURCE_ROOT if root is None else Path(root)
    if (root / ".git").exists():  # a checkout says what it is now, whatever was built
        return _checkout_sha(root)
    try:
        sha = json.loads((root / BUILD_INFO).read_text()).get("git_sha")
    except (OSError, ValueError, AttributeError):
        return None
    return sha if isinstance(sha, str) and _SHA.match(sha) else None


def _checkout_sha(root: Path) -> str | None:
    """HEAD of the checkout at ``root``; None when the ref cannot be resolved."""
    dotgit = root / ".git"
    if dotgit.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = _read(dotgit) or ""
        if not text.startswith("gitdir:"):
            return None
        gitdir = (root / text[len("gitdir:"):].strip()).resolve()
    elif dotgit.is_dir():
        gitdir = dotgit
    else:
        return None
    common = gitdir
    rel = _read(gitdir / "commondir")
    if rel:
        common = (gitdir / rel).resolve()
    head = _read(gitdir / "HEAD")
    if not head:
        return None
    if not head.startswith("ref:"):
        return head if _SHA.match(head) else None  # detached HEAD
    ref = head[len("ref:"):].strip()
    for base in (gitdir, common):
        sha = _read(base / ref)
        if sha and _SHA.match(sha):
            return sha
    packed = _read(common / "packed-refs") or ""
    for line in packed.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == ref and _SHA.match(parts[0]):
            return parts[0]
    return None


def pollbench_version() -> str:
    """The installed distribution's version; from a source tree that is not installed,
    ``pyproject.toml``'s (``harness.__version__`` when neither can be read)."""
    version = _version("pollbench")
    if version:
        return version
    try:
        import tomllib  # Python 3.11+

        return str(tomllib.loads((SOURCE_ROOT / "pyproject.toml").read_text())
                   ["project"]["version"])
    except (ImportError, OSError, ValueError, KeyError, TypeError):
        import harness

        return harness.__version__


def version_string() -> str:
    """``pollbench 0.1.0 (git 7fb269c1a2b3)``, ``(git unknown)`` when :func:`git_sha` has
    no commit: what ``pollbench --version`` prints."""
    sha = git_sha()
    return f"pollbench {pollbench_version()} (git {sha[:12] if sha else 'unknown'})"


def _nvml_info(pci_bus_id: str | None) -> dict:
    """Driver version, UUID and max clocks from NVML for the GPU at ``pci_bus_id``."""
    out = {"driver_version": None, "uuid": None, "clocks_mhz": None}
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML library, no driver
        return out
    try:
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            out["driver_version"] = v.decode() if isinstance(v, bytes) else str(v)
        except Exception:  # noqa: BLE001
            pass
        if not pci_bus_id:
            return out
        try:
            h = pynvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
        except Exception:  # noqa: BLE001
            return out
        try:
            u = pynvml.nvmlDeviceGetUUID(h)
            out["uuid"] = u.decode() if isinstance(u, bytes) else str(u)
        except Exception:  # noqa: BLE001
            pass
        clocks = {}
        for key, which in (("sm_max", "NVML_CLOCK_SM"), ("mem_max", "NVML_CLOCK_MEM")):
            try:
                clocks[key] = int(pynvml.nvmlDeviceGetMaxClockInfo(h, getattr(pynvml, which)))
            except Exception:  # noqa: BLE001
                clocks[key] = None
        out["clocks_mhz"] = clocks
        return out
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _pci_bus_id(index: int) -> str | None:
    try:
        from harness.gpu.driver import call

        raw = call("cuDeviceGetPCIBusId", 64, call("cuDeviceGet", index))
        text = raw.split(b"\0", 1)[0].decode() if isinstance(raw, bytes) else str(raw)
        return text.strip() or None
    except Exception:  # noqa: BLE001
        return None


def gpu_info(device: int = 0) -> dict | None:
    """The ``gpu`` block for CUDA device ``device``; None when there is no such GPU."""
    try:
        from harness.gpu import list_gpus

        gpus = list_gpus()
    except Exception:  # noqa: BLE001
        return None
    if not 0 <= device < len(gpus):
        return None
    g = gpus[device]
    bus = _pci_bus_id(device)
    nv = _nvml_info(bus)
    return {
        "index": int(g["index"]),
        "name": str(g["name"]),
        "arch": str(g["arch"]),
        "compute_capability": str(g["compute_capability"]),
        "sm_count": int(g["sm_count"]),
        "memory_bytes": int(g["memory_bytes"]),
        "driver_version": nv["driver_version"],  # e.g. "580.159.04" (NVML)
        "cuda_version": g.get("driver_version"),  # the CUDA version the driver supports
        "uuid": nv["uuid"],
        "pci_bus_id": bus,
        "clocks_mhz": nv["clocks_mhz"],
    }


def _nvjitlink() -> str | None:
    try:
        from harness.compile import nvjitlink_version

        return nvjitlink_version()
    except Exception:  # noqa: BLE001
        return None


def environment(backend: str, device: int = 0) -> dict:
    """The ``environment`` block for a run on ``backend`` (``"gpu"`` or ``"emu"``).

    On the emulator ``gpu`` is None (the figures are the emulator's, whatever GPU the
    machine has); on a GPU it describes CUDA device ``device``.
    """
    return {
        "backend": backend,
        "time_utc": utc_now(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pollbench": {"version": pollbench_version(), "git_sha": git_sha()},
        "packages": {name: _version(name) for name in PACKAGES},
        "nvjitlink": _nvjitlink(),
        "gpu": gpu_info(device) if backend == "gpu" else None,
    }


def machine_name(env: dict) -> str:
    """The results folder for ``env``: the GPU's name as a file name
    (``"NVIDIA H100 80GB HBM3"`` -> ``nvidia-h100-80gb-hbm3``), or ``emulator``."""
    if env.get("backend") != "gpu":
        return "emulator"
    name = (env.get("gpu") or {}).get("name") or "unknown-gpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-gpu"
