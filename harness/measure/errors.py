"""Errors of the measurement layer; each is a :class:`harness.errors.PollbenchError` (one line)."""

from __future__ import annotations

from harness.errors import PollbenchError

__all__ = ["MeasureError", "TimingConfigError", "NoValidSamples", "StreamBlockTimeout"]


class MeasureError(PollbenchError):
    """Any failure of the timing protocol or the samplers."""


class TimingConfigError(MeasureError, ValueError):
    """A :class:`~harness.measure.TimingConfig` field out of range."""


class NoValidSamples(MeasureError):
    """Every sample was rejected (the SM clock stayed under the threshold) until the time limit."""


class StreamBlockTimeout(MeasureError):
    """The blocking kernel gave up: ``launch()`` waited for the GPU while the stream was held.

    A launch function must only enqueue work on ``rt.stream``; one that synchronizes
    has to be measured with ``TimingConfig(blocking=False)``.
    """
