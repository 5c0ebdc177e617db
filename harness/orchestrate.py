"""``pollbench run``'s case loop: every case in its own process, under a wall-clock timeout.

A case runs in a child started with the ``spawn`` method (never ``fork``: the parent may
have initialised CUDA, which does not survive a fork), on a backend of its own. A sticky
CUDA error, a crash or a hang therefore costs one case, not the suite:

- the child returns the case's record (``harness.results.case_record``): "pass" or "fail";
- a case the executor cannot run (``harness.cases.Unsupported``) is "skip";
- an exception in the child is "error", with ``ExceptionType: first line`` as its message
  and the traceback in ``extra.traceback``; a child that dies without answering (a
  segfault, ``os._exit``) is "error" too;
- no answer within ``timeout_s`` (counted from the child's start, so its imports are
  included) and the child is killed: "timeout".

``case_fn`` (default: this module's :func:`execute_case`, looked up at call time) is what the child calls with the spec dict and
the options dict; it must be importable by name (a module-level function), as ``spawn``
pickles it by reference. Tests pass their own.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from typing import Callable

from harness.results import base_record, one_line, spec_dict, spec_label

DEFAULT_TIMEOUT_S = 300.0
EXIT_GRACE_S = 10.0  # after answering, a child may take this long to tear its context down


def execute_case(spec: dict, options: dict) -> dict:
    """The default case function (runs in the child): one case on a fresh backend.

    ``options``: ``backend`` ("gpu" | "emu"), ``device``, ``repeats``, ``timing`` (the
    keyword arguments of a ``harness.measure.TimingConfig``).
    """
    from harness.backend import make_backend
    from harness.cases import CaseSpec, Unsupported, run_case
    from harness.results import case_record

    try:
        with make_backend(options.get("backend"), options.get("device", 0)) as backend:
            timing = None
            if options.get("timing"):
                from harness.measure import TimingConfig

                timing = TimingConfig(**options["timing"])
            result = run_case(CaseSpec(**spec), backend, repeats=options.get("repeats"),
                              timing=timing)
    except Unsupported as e:
        return base_record(spec, "skip", str(e))
    return case_record(result)


def _child(conn, case_fn, spec: dict, options: dict) -> None:
    try:
        msg = ("ok", case_fn(spec, options))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as "error"
        msg = ("error", f"{type(e).__name__}: {one_line(e) or '(no message)'}",
               traceback.format_exc())
    try:
        conn.send(msg)
    except Exception as e:  # noqa: BLE001 - e.g. a record that does not pickle
        conn.send(("error", f"the case's result could not be sent back: {one_line(e)}", ""))
    finally:
        conn.close()


def _death(exitcode) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"the case's process died of {signal.Signals(-exitcode).name} without a result"
        except ValueError:
            pass
    return f"the case's process exited with code {exitcode} without a result"


def _stop(proc, grace_s: float) -> None:
    proc.join(grace_s)
    if proc.is_alive():
        proc.kill()
        proc.join()


def run_one(spec, options: dict, timeout_s: float = DEFAULT_TIMEOUT_S,
            case_fn: Callable | None = None, ctx=None) -> dict:
    """One case in a spawned child; its record, with ``wall_s`` from the child's start to
    its answer (or to the timeout)."""
    case_fn = case_fn or execute_case
    ctx = ctx or multiprocessing.get_context("spawn")
    spec = spec_dict(spec)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, case_fn, spec, options),
                       name=f"pollbench case {spec_label(spec)}")
    t0 = time.monotonic()
    msg, answered = None, False
    try:
        proc.start()
        send.close()  # the child holds the only writer: its death reads as EOF here
        if recv.poll(timeout_s):
            answered = True
            try:
                msg = recv.recv()
            except (EOFError, OSError):
                msg = None
        wall = time.monotonic() - t0
    finally:
        _stop(proc, EXIT_GRACE_S if answered else 0.0)
        recv.close()
    if not answered:
        return base_record(spec, "timeout",
                           f"no result within {timeout_s:g} s: the case's process was killed",
                           wall)
    if msg is None:
        return base_record(spec, "error", _death(proc.exitcode), wall)
    if msg[0] == "ok":
        rec = dict(msg[1])
        rec["wall_s"] = round(wall, 3)
        return rec
    return base_record(spec, "error", msg[1], wall, {"traceback": msg[2]} if msg[2] else None)


def run_cases(specs, options: dict, timeout_s: float = DEFAULT_TIMEOUT_S,
              case_fn: Callable | None = None, on_start: Callable | None = None,
              on_done: Callable | None = None) -> list:
    """Every spec, one after the other (timings must not share the GPU), each in its own
    process; their records in order. ``on_start(spec_dict)`` and ``on_done(record)`` are
    called around each case (a progress bar)."""
    ctx = multiprocessing.get_context("spawn")
    records = []
    for spec in specs:
        spec = spec_dict(spec)
        if on_start:
            on_start(spec)
        rec = run_one(spec, options, timeout_s, case_fn, ctx)
        records.append(rec)
        if on_done:
            on_done(rec)
    return records
