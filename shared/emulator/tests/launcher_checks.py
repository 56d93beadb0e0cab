"""Checks of the launcher's changes to moto, run inside moto's own Python without a server.

Usage: launcher_checks.py <path to launcher.py> <check name>. Exits non-zero, saying why,
when the check fails. Run by `launcher.rs`, one test per check.
"""
import importlib.util
import sys
import threading
import time
from types import SimpleNamespace

from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackOutcomeSuccess,
    CallbackPoolManager,
)

# How long the heartbeat clock of these tasks runs. A check that waits the whole window
# has failed.
HEARTBEAT_SECONDS = 2


def load_launcher(path: str) -> None:
    spec = importlib.util.spec_from_file_location("fleet_launcher", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def waiting_task():
    """A `.waitForTaskToken` task whose message is out, as moto has it just after sending.

    Returns the pool that `SendTask*` calls reach it through, and its token.
    """
    pool = CallbackPoolManager(activity_store={})
    endpoint = pool.generate()
    return pool, endpoint


def first_tick(endpoint, heartbeat_seconds=HEARTBEAT_SECONDS):
    """Starts the heartbeat clock as moto does after sending; whether a tick came in time."""
    clock = endpoint.setup_heartbeat_endpoint(heartbeat_seconds=heartbeat_seconds)
    started = time.monotonic()
    ticked = clock.clear_and_wait()
    return ticked, time.monotonic() - started


def answer_before_the_clock_starts():
    pool, endpoint = waiting_task()
    outcome = CallbackOutcomeSuccess(callback_id=endpoint.callback_id, output="{}")
    assert pool.notify(endpoint.callback_id, outcome), "SendTaskSuccess found the task"
    ticked, waited = first_tick(endpoint)
    assert ticked, (
        f"a task answered before its heartbeat clock started waited {waited:.1f} s and "
        "then timed out (the answer must end the wait at once)"
    )
    assert endpoint.get_outcome() is outcome, "the answer is the task's outcome"


def heartbeat_before_the_clock_starts():
    pool, endpoint = waiting_task()
    assert pool.heartbeat(endpoint.callback_id), (
        "SendTaskHeartbeat for a task whose message is out was refused (moto answers "
        "InvalidToken; AWS accepts it)"
    )
    ticked, waited = first_tick(endpoint)
    assert ticked, f"the early heartbeat was lost: the clock timed out after {waited:.1f} s"


def a_silent_task_still_times_out():
    _, endpoint = waiting_task()
    ticked, waited = first_tick(endpoint, heartbeat_seconds=0.2)
    assert not ticked, "a task that got neither answer nor heartbeat ticked"
    assert waited >= 0.2, f"its heartbeat window ended early, after {waited:.2f} s"


def a_stopped_execution_has_stopped_when_stop_answers():
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import Execution

    pool, endpoint = waiting_task()
    clock = endpoint.setup_heartbeat_endpoint(heartbeat_seconds=HEARTBEAT_SECONDS)
    woken = threading.Event()

    def wait_as_the_task_does():
        clock.clear_and_wait()
        woken.set()

    threading.Thread(target=wait_as_the_task_does, daemon=True).start()
    asked = []
    worker = SimpleNamespace(
        env=SimpleNamespace(callback_pool_manager=pool),
        stop=lambda **details: asked.append(details),
    )
    execution = SimpleNamespace(
        exec_worker=worker, exec_status=ExecutionStatus.RUNNING, stop_date=None
    )
    Execution.stop(execution, stop_date="now", error="Job.Cancelled", cause="by alice")
    assert asked, "the execution's thread was not asked to stop"
    assert execution.exec_status == ExecutionStatus.ABORTED, (
        f"DescribeExecution right after StopExecution reads {execution.exec_status}"
    )
    assert execution.stop_date == "now"
    try:
        pool.heartbeat(endpoint.callback_id)
    except Exception as e:  # noqa: BLE001 (the launcher's TaskTimedOut)
        assert type(e).__name__ == "TaskTimedOut", f"refused with {e!r}"
    else:
        raise AssertionError("the stopped execution's token took a heartbeat")
    assert woken.wait(HEARTBEAT_SECONDS / 2), (
        "the task waiting on the stopped execution's token was not woken"
    )


CHECKS = {
    f.__name__: f
    for f in (
        answer_before_the_clock_starts,
        heartbeat_before_the_clock_starts,
        a_silent_task_still_times_out,
        a_stopped_execution_has_stopped_when_stop_answers,
    )
}

if __name__ == "__main__":
    launcher, check = sys.argv[1], sys.argv[2]
    load_launcher(launcher)
    try:
        CHECKS[check]()
    except AssertionError as failure:
        print(f"{check}: {failure}", file=sys.stderr)
        sys.exit(1)
