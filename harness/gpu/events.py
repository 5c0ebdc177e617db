"""``EventTimer``: times GPU work between two timing-enabled cuda.core ``Event``s on the runtime's stream.

Made by :meth:`~harness.gpu.runtime.Runtime.timer`.
"""

from __future__ import annotations

from typing import Any

from harness.gpu.errors import CoreErrors, GpuError

__all__ = ["EventTimer"]


# ``Runtime`` below is an annotation only (a string, by ``from __future__ import annotations``):
# this module sits below harness.gpu.runtime and does not import it.
class EventTimer:
    """Times GPU work with two timing-enabled cuda.core Events on the runtime's stream.

    Use as a context manager (``with rt.timer() as t: ...; t.elapsed_ms()``) or with
    :meth:`start`/:meth:`stop`.  :meth:`elapsed_ms` waits for the stop event.
    """

    def __init__(self, rt: Runtime) -> None:
        from cuda.core import EventOptions

        self._rt = rt
        opts = EventOptions(timing_enabled=True)
        with CoreErrors(rt, "creating timing events"):
            self._start = rt.core_device.create_event(opts)
            self._stop = rt.core_device.create_event(opts)
        self._started = self._stopped = False

    def start(self) -> None:
        """Record the start event on the runtime's stream."""
        with CoreErrors(self._rt, "recording the start event"):
            self._rt.stream.record(self._start)
        self._started, self._stopped = True, False

    def stop(self) -> None:
        """Record the stop event on the runtime's stream."""
        if not self._started:
            raise GpuError("EventTimer.stop() called before start()")
        with CoreErrors(self._rt, "recording the stop event"):
            self._rt.stream.record(self._stop)
        self._stopped = True

    def elapsed_ms(self) -> float:
        """Milliseconds between the start and stop records (waits for the stop event)."""
        if not self._stopped:
            raise GpuError("EventTimer.elapsed_ms() called before stop()")
        with CoreErrors(self._rt, "reading the event timer"):
            self._stop.sync()
            return float(self._stop - self._start)

    def __enter__(self) -> EventTimer:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop()

    def close(self) -> None:
        """Destroy the events."""
        for ev in (self._start, self._stop):
            try:
                ev.close()
            except Exception:
                pass
