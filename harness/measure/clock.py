"""The SM clock a sample ran at: probe kernels around it, and the maximum clock to compare with.

:func:`window_clock_mhz` (pure) turns the two probe records of a sample into MHz;
:class:`ClockProbe` launches the probes on a :class:`~harness.gpu.Runtime`;
:func:`max_sm_clock_mhz` reads the reference clock (device attribute, else NVML).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from harness.measure.kernels import RECORD_BYTES, RECORD_WORDS, decode_record

if TYPE_CHECKING:  # pragma: no cover
    from harness.gpu import KernelHandle, Runtime

__all__ = ["window_clock_mhz", "ClockProbe", "max_sm_clock_mhz", "device_clock_mhz", "nvml_max_sm_clock_mhz"]


def window_clock_mhz(pre: Any, post: Any, seq: int) -> float | None:
    """SM 0's clock (MHz) from the first reading of ``pre`` to the last reading of ``post``.

    ``pre`` and ``post`` are probe records (5 u64 words, see :mod:`harness.measure.kernels`)
    written for launch number ``seq``. Returns None when either probe found no block on
    SM 0 for this ``seq`` (stale record) or the timer did not advance.
    """
    s0, t0, c0, _, _ = decode_record(pre)
    s1, _, _, t1, c1 = decode_record(post)
    want = int(seq) & 0xFFFFFFFF
    if s0 != want or s1 != want or t1 <= t0 or c1 < c0:
        return None
    return (c1 - c0) / (t1 - t0) * 1e3  # cycles per ns -> MHz


class ClockProbe:
    """Launches the clock probes of one sample: :meth:`before` and :meth:`after`, then :meth:`read`."""

    def __init__(self, rt: Runtime, kernel: KernelHandle, spin_ns: int = 1000) -> None:
        self._rt = rt
        self._kernel = kernel
        self._spin = np.uint64(int(spin_ns))
        self._recs = rt.alloc(2 * RECORD_BYTES)
        self._recs.fill_bytes(0)
        self.seq = 0

    def _launch(self, slot: int) -> None:
        self._rt.launch(
            self._kernel, self._rt.sm_count, 1, self._recs.ptr + slot * RECORD_BYTES, np.uint32(self.seq),
            self._spin, check=False,
        )

    def before(self) -> None:
        """Enqueue the probe that opens a sample (a new sequence number)."""
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        self._launch(0)

    def after(self) -> None:
        """Enqueue the probe that closes the sample."""
        self._launch(1)

    def read(self) -> float | None:
        """Wait for the probes and return the sample's SM clock in MHz (None: unknown)."""
        words = self._recs.to_host(np.uint64, (2, RECORD_WORDS))
        return window_clock_mhz(words[0], words[1], self.seq)

    def close(self) -> None:
        """Free the record buffer."""
        self._recs.free()


def device_clock_mhz(rt: Runtime) -> float | None:
    """``CU_DEVICE_ATTRIBUTE_CLOCK_RATE`` in MHz (the max boost clock; 1980 on an H100 SXM), or None."""
    from harness.gpu import driver as drv

    try:
        attr = drv.driver_module().CUdevice_attribute.CU_DEVICE_ATTRIBUTE_CLOCK_RATE
        khz = int(drv.call("cuDeviceGetAttribute", attr, rt.cu_device))
    except Exception:
        return None
    return khz / 1e3 if khz > 0 else None


def nvml_max_sm_clock_mhz(pci_bus_id: str | None = None, index: int = 0) -> float | None:
    """NVML's maximum SM clock (``nvmlDeviceGetMaxClockInfo``) in MHz, or None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        if pci_bus_id:
            h = pynvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
        else:
            h = pynvml.nvmlDeviceGetHandleByIndex(index)
        mhz = int(pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM))
        return float(mhz) if mhz > 0 else None
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def max_sm_clock_mhz(rt: Runtime) -> tuple[float | None, str]:
    """The reference clock for rejecting samples and where it came from.

    ``(mhz, "device attribute")``, else ``(mhz, "NVML")``, else ``(None, why)``.
    """
    mhz = device_clock_mhz(rt)
    if mhz:
        return mhz, "device attribute"
    from harness.measure.nvml import cuda_pci_bus_id

    mhz = nvml_max_sm_clock_mhz(cuda_pci_bus_id(rt.device))
    if mhz:
        return mhz, "NVML"
    return None, "neither CU_DEVICE_ATTRIBUTE_CLOCK_RATE nor NVML gave a max SM clock: no sample is rejected"

