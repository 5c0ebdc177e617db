"""NVML while a case runs (architecture §8): a background thread sampling clocks, power, temperature,
clock-event reasons, energy and GPM SM occupancy, through ``pynvml`` (nvidia-ml-py).

::

    with NvmlSampler(0) as s:            # or NvmlSampler.for_runtime(rt)
        ...                              # run the case
    s.summary()   # {"available": True, "samples": 57, "sm_clock_mhz": {"mean":..}, "energy_j": .., ...}

A field the GPU or driver does not support is null in the summary (and named under
``unsupported``), never an exception; without NVML (no driver, no nvidia-ml-py) the
sampler does nothing and ``summary()`` says ``available: false`` with the reason.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from harness.gpu import Runtime

__all__ = ["NvmlSampler", "CLOCK_EVENT_REASONS", "THROTTLE_REASONS", "cuda_pci_bus_id", "reason_names"]

#: nvmlClocksEventReason* bits, by name
CLOCK_EVENT_REASONS = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}
#: the reasons that mean the GPU ran slower than it could (power, thermal, hardware slowdown)
THROTTLE_REASONS = 0x4 | 0x8 | 0x20 | 0x40 | 0x80

_NUMERIC = ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c")
_GPM_EVERY_S = 0.1  # GPM metrics are differences between two samples: keep them ~100 ms apart


def reason_names(mask: int) -> list[str]:
    """The names of the clock-event reason bits set in ``mask``."""
    return [name for name, bit in CLOCK_EVENT_REASONS.items() if mask & bit]


def cuda_pci_bus_id(ordinal: int) -> str | None:
    """The PCI bus id of CUDA device ``ordinal`` (``"0000:18:00.0"``), or None without a driver."""
    try:
        from harness.gpu import driver as drv

        dev = drv.call("cuDeviceGet", int(ordinal))
        raw = drv.call("cuDeviceGetPCIBusId", 64, dev)
    except Exception:
        return None
    text = raw.split(b"\0", 1)[0].decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
    return text.strip() or None


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _stats(values: list) -> dict | None:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    return {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}


class NvmlSampler:
    """Samples one GPU every ``interval_s`` on a daemon thread between :meth:`start` and :meth:`stop`.

    Args:
        device_index: the NVML index (used when ``pci_bus_id`` is None or not found).
        pci_bus_id: pick the GPU by PCI bus id (what :meth:`for_runtime` does, so the CUDA
            ordinal and the NVML index cannot disagree).
        interval_s: sampling period (about 10 ms).
        gpm: sample GPM ``SM_OCCUPANCY`` where the GPU supports it (Hopper does).
    """

    def __init__(self, device_index: int = 0, *, pci_bus_id: str | None = None, interval_s: float = 0.01,
                 gpm: bool = True) -> None:
        self.device_index = int(device_index)
        self.pci_bus_id = pci_bus_id
        self.interval_s = float(interval_s)
        self.gpm = gpm
        self.available = False
        self.reason = "not started"
        self.name: str | None = None
        self._nvml: Any = None
        self._h: Any = None
        self._times: list[float] = []
        self._values: dict[str, list] = {k: [] for k in _NUMERIC}
        self._reasons: list[int | None] = []
        self._unsupported: dict[str, str] = {}
        self._errors: dict[str, list] = {}  # field -> [count, last message]
        self._energy0: int | None = None
        self._energy1: int | None = None
        self._t0 = self._t1 = 0.0
        self._gpm_first: Any = None
        self._gpm_prev: Any = None
        self._gpm_prev_t = 0.0
        self._gpm_intervals: list[float] = []
        self._gpm_window: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_runtime(cls, rt: Runtime, **kw: Any) -> NvmlSampler:
        """A sampler for the GPU of a :class:`~harness.gpu.Runtime` (matched by PCI bus id)."""
        return cls(rt.device, pci_bus_id=cuda_pci_bus_id(rt.device), **kw)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> NvmlSampler:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        """Initialise NVML, read the energy counter and the first GPM sample, start the thread.

        Never raises for a missing or failing NVML: the sampler then stays unavailable.
        """
        try:
            import pynvml
        except ImportError as exc:
            self.reason = f"nvidia-ml-py is not installed ({_one_line(exc)})"
            return
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            self.reason = f"NVML unavailable: {_one_line(exc)}"
            return
        self._nvml = pynvml
        try:
            self._h = self._handle()
        except Exception as exc:
            self.reason = f"NVML has no device {self.pci_bus_id or self.device_index}: {_one_line(exc)}"
            self._shutdown()
            return
        self.available, self.reason = True, ""
        self.name = self._read("name", lambda: _decode(pynvml.nvmlDeviceGetName(self._h)))
        self._t0 = time.monotonic()
        self._energy0 = self._read("energy_j", lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._h)))
        if self.gpm:
            self._gpm_start()
        else:
            self._unsupported["gpm_sm_occupancy_pct"] = "GPM sampling turned off"
        self._tick()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pollbench-nvml", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, take a last sample, read the energy counter and the last GPM sample."""
        if not self.available or self._nvml is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        pynvml = self._nvml
        self._tick()
        self._t1 = time.monotonic()
        self._energy1 = self._read("energy_j", lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._h)))
        if self._gpm_first is not None:
            self._gpm_finish()
        self._shutdown()

    def _shutdown(self) -> None:
        pynvml, self._nvml = self._nvml, None
        if pynvml is not None:
            try:
                pynvml.nvmlShutdown()
            except Exception:
                pass

    def _handle(self) -> Any:
        pynvml = self._nvml
        if self.pci_bus_id:
            try:
                return pynvml.nvmlDeviceGetHandleByPciBusId(self.pci_bus_id)
            except Exception:
                pass  # fall back to the index
        return pynvml.nvmlDeviceGetHandleByIndex(self.device_index)

    # ------------------------------------------------------------------ sampling
    def _read(self, field: str, fn: Any) -> Any:
        """``fn()``, or None: an unsupported field is remembered and not asked again."""
        if field in self._unsupported:
            return None
        pynvml = self._nvml
        try:
            return fn()
        except Exception as exc:
            value = getattr(exc, "value", None)
            unsupported = {getattr(pynvml, "NVML_ERROR_NOT_SUPPORTED", 3), getattr(pynvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13)}
            if value in unsupported or isinstance(exc, (AttributeError, NotImplementedError)):
                self._unsupported[field] = _one_line(exc) or type(exc).__name__
            else:
                err = self._errors.setdefault(field, [0, ""])
                err[0] += 1
                err[1] = _one_line(exc) or type(exc).__name__
            return None

    def _clock_reasons(self) -> int:
        pynvml = self._nvml
        fn = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(fn(self._h))

    def _tick(self) -> None:
        pynvml, h = self._nvml, self._h
        row = {
            "sm_clock_mhz": self._read("sm_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
            "mem_clock_mhz": self._read("mem_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)),
            "power_w": self._read("power_w", lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
            "temperature_c": self._read(
                "temperature_c", lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
        }
        reasons = self._read("clock_event_reasons", self._clock_reasons)
        now = time.monotonic()
        with self._lock:
            self._times.append(now)
            for k, v in row.items():
                self._values[k].append(v)
            self._reasons.append(reasons)
        if self._gpm_prev is not None and now - self._gpm_prev_t >= _GPM_EVERY_S:
            self._gpm_step(now)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._tick()
            except Exception as exc:  # never let the thread die silently
                err = self._errors.setdefault("sampler", [0, ""])
                err[0] += 1
                err[1] = _one_line(exc)

    # ------------------------------------------------------------------ GPM
    def _gpm_start(self) -> None:
        pynvml = self._nvml
        support = self._read("gpm_sm_occupancy_pct", lambda: pynvml.nvmlGpmQueryDeviceSupport(self._h))
        if support is None:
            return
        if not getattr(support, "isSupportedDevice", 0):
            self._unsupported["gpm_sm_occupancy_pct"] = "GPM is not supported on this GPU"
            return
        first = self._gpm_sample()
        prev = self._gpm_sample()
        if first is None or prev is None:
            return
        self._gpm_first, self._gpm_prev, self._gpm_prev_t = first, prev, time.monotonic()

    def _gpm_sample(self) -> Any:
        pynvml = self._nvml

        def take() -> Any:
            s = pynvml.nvmlGpmSampleAlloc()
            try:
                pynvml.nvmlGpmSampleGet(self._h, s)
            except Exception:
                pynvml.nvmlGpmSampleFree(s)
                raise
            return s

        return self._read("gpm_sm_occupancy_pct", take)

    def _gpm_occupancy(self, s1: Any, s2: Any) -> float | None:
        pynvml = self._nvml

        def get() -> float | None:
            mg = pynvml.c_nvmlGpmMetricsGet_t()
            mg.version = pynvml.NVML_GPM_METRICS_GET_VERSION
            mg.numMetrics = 1
            mg.sample1, mg.sample2 = s1, s2
            mg.metrics[0].metricId = pynvml.NVML_GPM_METRIC_SM_OCCUPANCY
            pynvml.nvmlGpmMetricsGet(mg)
            m = mg.metrics[0]
            if int(m.nvmlReturn) != getattr(pynvml, "NVML_SUCCESS", 0):
                raise pynvml.NVMLError(int(m.nvmlReturn))
            return float(m.value)

        return self._read("gpm_sm_occupancy_pct", get)

    def _gpm_free(self, s: Any) -> None:
        try:
            self._nvml.nvmlGpmSampleFree(s)
        except Exception:
            pass

    def _gpm_step(self, now: float) -> None:
        cur = self._gpm_sample()
        if cur is None:
            return
        occ = self._gpm_occupancy(self._gpm_prev, cur)
        if occ is not None:
            self._gpm_intervals.append(occ)
        self._gpm_free(self._gpm_prev)
        self._gpm_prev, self._gpm_prev_t = cur, now

    def _gpm_finish(self) -> None:
        self._gpm_step(time.monotonic())
        if self._gpm_prev is not None and self._gpm_first is not None:
            self._gpm_window = self._gpm_occupancy(self._gpm_first, self._gpm_prev)
        for s in (self._gpm_first, self._gpm_prev):
            if s is not None:
                self._gpm_free(s)
        self._gpm_first = self._gpm_prev = None

    # ------------------------------------------------------------------ results
    def _energy(self) -> tuple[float | None, str | None]:
        if self._energy0 is not None and self._energy1 is not None:
            return (self._energy1 - self._energy0) / 1e3, "counter"  # mJ -> J
        p, t = self._values["power_w"], self._times
        pts = [(ti, pi) for ti, pi in zip(t, p) if pi is not None]
        if len(pts) >= 2:
            return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(pts, pts[1:])), "power_integral"
        return None, None

    def summary(self) -> dict:
        """Per field mean/min/max (None where unsupported), energy over the window, GPM occupancy."""
        with self._lock:
            values = {k: list(v) for k, v in self._values.items()}
            reasons = [r for r in self._reasons if r is not None]
            n = len(self._times)
        out: dict[str, Any] = {
            "available": self.available,
            "reason": self.reason,
            "device": {"index": self.device_index, "pci_bus_id": self.pci_bus_id, "name": self.name},
            "interval_s": self.interval_s,
            "samples": n,
            "duration_s": (self._t1 - self._t0) if self._t1 else None,
        }
        for k in _NUMERIC:
            out[k] = _stats(values[k])
        if reasons:
            any_mask = 0
            for r in reasons:
                any_mask |= r
            out["clock_event_reasons"] = {
                "any": any_mask,
                "names": reason_names(any_mask),
                "throttled_fraction": sum(1 for r in reasons if r & THROTTLE_REASONS) / len(reasons),
            }
        else:
            out["clock_event_reasons"] = None
        out["energy_j"], out["energy_source"] = self._energy() if self.available else (None, None)
        out["gpm_sm_occupancy_pct"] = self._gpm_window
        iv = _stats(self._gpm_intervals)
        out["gpm_sm_occupancy_pct_intervals"] = None if iv is None else {**iv, "n": len(self._gpm_intervals)}
        out["unsupported"] = dict(self._unsupported)
        out["errors"] = {k: f"{c}x {msg}" for k, (c, msg) in self._errors.items()}
        return out


def _decode(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, (bytes, bytearray)) else str(v)
