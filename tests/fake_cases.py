"""Case functions for the orchestration tests. They run in spawned children, which import
this module by name (spawn passes the parent's sys.path on), so they live at module level."""

import os
import time


def passing(spec, options):
    """The real thing: one case on the emulator."""
    from harness.orchestrate import execute_case

    return execute_case(spec, options)


def failing(spec, options):
    """The real case, but the workload's numpy reference is off by one: its check fails."""
    from harness.orchestrate import execute_case
    from workloads import get_workload

    wl = type(get_workload(spec["workload"]))
    reference = wl.reference
    wl.reference = lambda self, inputs, n: reference(self, inputs, n) + 1
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
