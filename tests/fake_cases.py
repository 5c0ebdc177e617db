"""Case functions for the orchestration tests. They run in spawned children, which import
this module by name (spawn passes the parent's sys.path on), so they live at module level."""

import os
import time


def passing(spec, options):
    """The real thing: one case on the emulator."""
    from harness.orchestrate import execute_case

    return execute_case(spec, options)


def failing(spec, options):
    """The real case, but numpy's answer is off by one (also the one the warm-up computed
    before this ran): its check fails."""
    import harness.cases as cases
    from harness.orchestrate import execute_case

    real = cases.inputs_and_reference
    cases.inputs_and_reference = lambda s: (lambda inputs, want: (inputs, want + 1))(*real(s))
    return execute_case(spec, options)


def hanging(spec, options):
    while True:
        time.sleep(1)


def raising(spec, options):
    raise RuntimeError("boom\nsecond line of the message")


def dying(spec, options):
    os._exit(3)


def unpicklable(spec, options):
    return {"spec": spec, "status": "pass", "f": lambda: 0}


def unsupported(spec, options):
    """The workload claims to spawn tasks: block_on has no run queue, the case is a skip."""
    from harness.orchestrate import execute_case
    from workloads import get_workload

    type(get_workload(spec["workload"])).requires_spawn = True
    return execute_case(spec, options)


def stamp_warm(spec, options):
    """A warm-up that leaves a mark: ``<dir>/<dispatch>.warm`` holding its start time."""
    with open(os.path.join(options["dir"], f"{spec['dispatch']}.warm"), "w") as f:
        f.write(repr(time.time()))


def stamped(spec, options):
    """A case that reports its warm-up's mark and its own start and end times."""
    d = options["dir"]
    t0 = time.time()
    time.sleep(options.get("sleep", 0))
    with open(os.path.join(d, f"{spec['dispatch']}.warm")) as f:
        warm = float(f.read())
    return {"spec": spec, "status": "pass", "message": None,
            "extra": {"warm": warm, "start": t0, "end": time.time()}}


def orphan_case(spec, options):
    """Kills its parent (SIGKILL), then finishes its work as if nothing happened: a child
    must exit quietly when its parent is gone, not print tracebacks later."""
    import signal

    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(2)
    with open(os.path.join(options["dir"], "still_running"), "w") as f:
        f.write(str(os.getpid()))
    return {"spec": spec, "status": "pass", "message": None}
