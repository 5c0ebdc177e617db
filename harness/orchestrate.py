"""``pollbench run``'s case loop: every case in its own process, under a wall-clock timeout.

A case runs in a child started with the ``spawn`` method (never ``fork``: the parent may
have initialised CUDA, which does not survive a fork), on a backend of its own. A sticky
CUDA error, a crash or a hang therefore costs one case, not the suite:

- the child returns the case's record (``harness.results.case_record``): "pass" or "fail";
- a case the executor cannot run (``harness.cases.unsupported_reason``) is "skip", decided
  here without a process;
- an exception in the child is "error", with ``ExceptionType: first line`` as its message
  and the traceback in ``extra.traceback``; a child that dies without answering (a
  segfault, ``os._exit``) is "error" too;
- no answer within ``timeout_s`` of its turn and the child is killed: "timeout".

The next case's process is started while the current one runs and does its CPU-only
preparation then (``warm_case``: imports, building its module -- kept for the case -- and
linking it into the cubin cache), so a case's turn starts at its first launch; it touches the GPU only once told to
go. Children ignore SIGINT (the parent owns Ctrl-C and stops them) and exit quietly when
the parent dies.

``case_fn`` (default: :func:`execute_case`) is what the child calls with the spec dict and
the options dict; like ``warm_fn`` it must be importable by name (a module-level
function), as ``spawn`` pickles it by reference. Tests pass their own.
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


def warm_case(spec: dict, options: dict) -> None:
    """What a case's process does before its turn (no CUDA: the GPU belongs to the running
    case): the imports, the case's module built (kept for the case's own build) and linked
    into the cubin cache, its inputs drawn and numpy's answer computed (kept too), so that
    its turn starts at the first upload."""
    from harness.cases import CaseSpec, prebuild, prepare_inputs
    from harness.compile import compile_ptx

    arch = options.get("arch") or "sm_90"  # the emulator's cases report for sm_90
    case = CaseSpec(**spec)
    m, _, _, _ = prebuild(case, arch)
    compile_ptx(m.to_ptx(), arch)
    prepare_inputs(case)


def _watch_parent(go) -> None:
    """In the child, after its go: when the parent dies (its end of ``go`` closes), exit at
    once and quietly -- nobody is left to read the result or to time anything."""
    import os

    try:
        go.recv()
    except (EOFError, OSError):
        pass
    os._exit(0)


def _child(conn, go, case_fn, warm_fn, spec: dict, options: dict) -> None:
    # Ctrl-C goes to the whole process group: the parent handles it (and stops us).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if warm_fn is not None:
        try:
            warm_fn(spec, options)
        except BaseException:  # noqa: BLE001 - the case itself will meet it and report it
            pass
    try:
        go.recv()
    except (EOFError, OSError):
        return  # the parent is gone (or gave up on us) before our turn
    import threading

    threading.Thread(target=_watch_parent, args=(go,), daemon=True).start()
    try:
        msg = ("ok", case_fn(spec, options))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as "error"
        msg = ("error", f"{type(e).__name__}: {one_line(e) or '(no message)'}",
               traceback.format_exc())
    try:
        try:
            conn.send(msg)
        except (BrokenPipeError, EOFError):
            return  # the parent is gone: nobody to tell
        except Exception as e:  # noqa: BLE001 - e.g. a record that does not pickle
            conn.send(("error", f"the case's result could not be sent back: {one_line(e)}", ""))
    except OSError:
        return
    finally:
        conn.close()


def _death(exitcode) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"the case's process died of {signal.Signals(-exitcode).name} without a result"
        except ValueError:
            pass
    return f"the case's process exited with code {exitcode} without a result"


class CaseProcess:
    """One case's process: started (and warming up, with ``warm_fn``) ahead of its turn,
    then told to go; :meth:`result` waits for its record under the timeout."""

    def __init__(self, spec, options: dict, case_fn: Callable | None = None,
                 warm_fn: Callable | None = None, ctx=None):
        ctx = ctx or multiprocessing.get_context("spawn")
        self.spec = spec_dict(spec)
        self.recv, send = ctx.Pipe(duplex=False)
        go_recv, self.go = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child, args=(send, go_recv, case_fn or execute_case,
                                                     warm_fn, self.spec, options),
                                name=f"pollbench case {spec_label(self.spec)}")
        self.proc.start()
        send.close()  # the child holds the only writer: its death reads as EOF here
        go_recv.close()

    def result(self, timeout_s: float) -> dict:
        """Start the case and wait for its record, with ``wall_s`` from the go to its answer
        (or to the timeout); the process is stopped either way."""
        t0 = time.monotonic()
        msg, answered = None, False
        try:
            self.go.send("go")
            if self.recv.poll(timeout_s):
                answered = True
                try:
                    msg = self.recv.recv()
                except (EOFError, OSError):
                    msg = None
        except (BrokenPipeError, OSError):
            pass  # died before its turn: reported below
        finally:
            wall = time.monotonic() - t0
            self.stop(EXIT_GRACE_S if answered else 0.0)
        spec = self.spec
        if not answered:
            if self.proc.exitcode not in (None, -signal.SIGKILL):
                return base_record(spec, "error", _death(self.proc.exitcode), wall)
            return base_record(spec, "timeout",
                               f"no result within {timeout_s:g} s: the case's process was killed",
                               wall)
        if msg is None:
            return base_record(spec, "error", _death(self.proc.exitcode), wall)
        if msg[0] == "ok":
            rec = dict(msg[1])
            rec["wall_s"] = round(wall, 3)
            return rec
        return base_record(spec, "error", msg[1], wall,
                           {"traceback": msg[2]} if msg[2] else None)

    def stop(self, grace_s: float = 0.0) -> None:
        """Wait up to ``grace_s`` for the process to end, then kill it; close the pipes."""
        self.proc.join(grace_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.go.close()
        self.recv.close()


def run_one(spec, options: dict, timeout_s: float = DEFAULT_TIMEOUT_S,
            case_fn: Callable | None = None, ctx=None) -> dict:
    """One case in a spawned child; its record, with ``wall_s`` from the child's start to
    its answer (or to the timeout)."""
    return CaseProcess(spec, options, case_fn, ctx=ctx).result(timeout_s)


def run_cases(specs, options: dict, timeout_s: float = DEFAULT_TIMEOUT_S,
              case_fn: Callable | None = None, on_start: Callable | None = None,
              on_done: Callable | None = None, warm_fn: Callable | None = None) -> list:
    """Every spec, one after the other (timings must not share the GPU), each in its own
    process; their records in order. The next case's process starts (and runs ``warm_fn``)
    while the current one runs. A case the executor cannot run is a skip without a process.
    ``on_start(spec_dict)`` and ``on_done(record)`` are called around each case (a progress
    bar). On an exception (Ctrl-C, a signal) every process is stopped; the records so far
    are what ``on_done`` saw."""
    from harness.cases import CaseSpec, unsupported_reason

    ctx = multiprocessing.get_context("spawn")
    specs = [spec_dict(s) for s in specs]
    skips = [unsupported_reason(CaseSpec(**s)) for s in specs]
    runnable = [i for i, why in enumerate(skips) if not why]

    def launch(i):
        return CaseProcess(specs[i], options, case_fn, warm_fn, ctx)

    records, ahead = [], {}
    try:
        for i, spec in enumerate(specs):
            if on_start:
                on_start(spec)
            if skips[i]:
                rec = base_record(spec, "skip", skips[i], 0.0)
            else:
                proc = ahead.pop(i, None) or launch(i)
                later = [j for j in runnable if j > i][:1]
                for j in later:  # the next one warms up meanwhile
                    ahead[j] = launch(j)
                rec = proc.result(timeout_s)
            records.append(rec)
            if on_done:
                on_done(rec)
    finally:
        for proc in ahead.values():
            proc.stop()
    return records
