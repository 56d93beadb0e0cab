"""Runs the moto server and exits as soon as the process that started it is gone.

The parent may die without cleaning up (kill -9, a test binary that exits); polling the
parent pid means the emulator never outlives the fleet process that owns it.

Importing this file also patches moto: it spares work that changes none of moto's
answers, and it makes a few behaviours (DynamoDB item writes, task heartbeats, failure
causes, task tokens and stopping an execution) as AWS has them. Each change, why, and the test that proves it
are listed once, in docs/local-parity.md at the repository's root.

Importing this file applies those changes and nothing else; run as a script, it also
watches its parent and serves.
"""
import functools
import gc
import inspect
import logging
import os
import sys
import threading
import time

PARENT = os.getppid()


def watch_parent() -> None:
    while True:
        if os.getppid() != PARENT:
            os._exit(0)
        time.sleep(0.3)


if __name__ == "__main__":
    threading.Thread(target=watch_parent, daemon=True).start()

# moto answers every request of every service with `Access-Control-Allow-Origin: *`
# (flask-cors); AWS answers a browser's cross-origin S3 request only as the bucket's
# CORS rules allow. Read by moto.settings when it is first imported, just below.
os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"

import moto.backends  # noqa: E402  (imported after the watchdog starts)

_modules = tuple(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _modules
logging.getLogger("werkzeug").setLevel(logging.WARNING)

import jsonpath_ng.ext  # noqa: E402

# A compiled expression is only read when it is used, so one serves every caller.
jsonpath_ng.ext.parse = functools.lru_cache(maxsize=4096)(jsonpath_ng.ext.parse)

from moto.dynamodb.models import DynamoDBBackend  # noqa: E402

_item_writes = threading.RLock()


def _one_at_a_time(write):
    @functools.wraps(write)
    def serialized(*args, **kwargs):
        with _item_writes:
            return write(*args, **kwargs)

    return serialized


for _write in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(DynamoDBBackend, _write, _one_at_a_time(getattr(DynamoDBBackend, _write)))

from moto.core.exceptions import AWSError  # noqa: E402
from moto.core.responses import EmptyResult  # noqa: E402
from moto.stepfunctions.parser.api import InvalidToken  # noqa: E402
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (  # noqa: E402
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (  # noqa: E402
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import (  # noqa: E402
    StateTask,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E402
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import (  # noqa: E402
    CallbackEndpoint,
    CallbackPoolManager,
    HeartbeatTimeoutError,
)
from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: E402

_task_failure = StateTask._from_error


def _heartbeat_named(self, env, ex):
    event = _task_failure(self, env, ex)
    if isinstance(ex, HeartbeatTimeoutError):
        name = StatesErrorNameType.StatesHeartbeatTimeout
        event.error_name = StatesErrorName(typ=name)
        for details in (event.event_details or {}).values():
            details["error"] = name.to_name()
    return event


StateTask._from_error = _heartbeat_named

_setup_heartbeat = CallbackEndpoint.setup_heartbeat_endpoint
_notify_heartbeat = CallbackEndpoint.notify_heartbeat


def _heartbeat_before_the_wait(self):
    # AWS accepts a heartbeat for any task still waiting on its token.
    if self._heartbeat_endpoint is None:
        self._fleet_heartbeat_before_wait = True
        return True
    return _notify_heartbeat(self)


def _clock_seeing_earlier_calls(self, heartbeat_seconds):
    endpoint = _setup_heartbeat(self, heartbeat_seconds=heartbeat_seconds)
    # `notify` stores the outcome before it looks for this endpoint, and the endpoint is
    # stored before the outcome is read here, so an answer racing this is seen by one side.
    if self._outcome is not None or getattr(self, "_fleet_heartbeat_before_wait", False):
        endpoint.notify()
    return endpoint


CallbackEndpoint.notify_heartbeat = _heartbeat_before_the_wait
CallbackEndpoint.setup_heartbeat_endpoint = _clock_seeing_earlier_calls

_attempt = StateTaskServiceCallback._evaluate_with_timeout


def _attempt_with_its_own_token(self, env):
    context = env.states.context_object
    # Only a `.waitForTaskToken` task has a token while it runs; moto makes it once, for
    # the first attempt.
    if "Task" in context.context_object_data:
        if context.context_object_data["State"].get("RetryCount", 0) > 0:
            env.callback_pool_manager.add(context.update_task_token())
        token = context.context_object_data["Task"]["Token"]
    else:
        token = None
    try:
        return _attempt(self, env)
    finally:
        endpoint = token and env.callback_pool_manager.get(token)
        if endpoint:
            endpoint._fleet_closed = True


StateTaskServiceCallback._evaluate_with_timeout = _attempt_with_its_own_token


class TaskTimedOut(AWSError):
    TYPE = "TaskTimedOut"

    def __init__(self):
        super().__init__("Task Timed Out: 'Provided task does not exist anymore'")


def _refusing_closed(call):
    # moto's own path for a closed token (`CallbackEndpoint.report`) ends in a TypeError
    # (HTTP 500), so a closed token is refused here, with AWS's error.
    @functools.wraps(call)
    def checked(self, callback_id, *args, **kwargs):
        endpoint = self.get(callback_id)
        if endpoint is not None and getattr(endpoint, "_fleet_closed", False):
            raise TaskTimedOut()
        return call(self, callback_id, *args, **kwargs)

    return checked


CallbackPoolManager.notify = _refusing_closed(CallbackPoolManager.notify)
CallbackPoolManager.heartbeat = _refusing_closed(CallbackPoolManager.heartbeat)


def _ended_executions_timed_out(call):
    # moto looks for the token only in running executions and calls any other unknown.
    @functools.wraps(call)
    def answered(self, task_token, *args, **kwargs):
        try:
            return call(self, task_token, *args, **kwargs)
        except InvalidToken:
            for execution in self._get_executions():
                env = getattr(getattr(execution, "exec_worker", None), "env", None)
                if env is not None and env.callback_pool_manager.get(task_token):
                    raise TaskTimedOut() from None
            raise

    return answered


for _answer in ("send_task_success", "send_task_heartbeat"):
    setattr(
        StepFunctionsParserBackend,
        _answer,
        _ended_executions_timed_out(getattr(StepFunctionsParserBackend, _answer)),
    )

from moto.stepfunctions.parser.api import ExecutionStatus  # noqa: E402
from moto.stepfunctions.parser.backend.execution import (  # noqa: E402
    Execution as ParserExecution,
)

_stop_execution = ParserExecution.stop


def _stopped_before_the_answer(self, stop_date, error, cause):
    # AWS has stopped an execution when StopExecution answers: it is ABORTED and its task
    # tokens are closed. moto only asks the execution's thread to stop, and the thread
    # notices when the task it waits on hears from its heartbeat clock: until then the
    # execution reads RUNNING and its worker's heartbeats are accepted.
    _stop_execution(self, stop_date=stop_date, error=error, cause=cause)
    worker = self.exec_worker
    if worker is None:
        return
    if self.exec_status == ExecutionStatus.RUNNING:
        self.exec_status = ExecutionStatus.ABORTED
        self.stop_date = stop_date
    for endpoint in list(worker.env.callback_pool_manager._pool.values()):
        endpoint._fleet_closed = True
        clock = endpoint._heartbeat_endpoint
        if clock is not None:
            # Wakes the waiting task, which then sees its execution stopped.
            clock.notify()


ParserExecution.stop = _stopped_before_the_answer

from moto.stepfunctions.responses import StepFunctionResponse  # noqa: E402


def _send_task_failure(self):
    backend = self.stepfunction_backend
    failure = {"error": self._get_param("error")}
    # Only the backend that runs definitions (which fleet always switches on) takes one.
    if "cause" in inspect.signature(backend.send_task_failure).parameters:
        failure["cause"] = self._get_param("cause")
    backend.send_task_failure(self._get_param("taskToken"), **failure)
    return EmptyResult()


StepFunctionResponse.send_task_failure = _send_task_failure


def _freeze_survivors(phase: str, info: dict) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


if __name__ == "__main__":
    from moto.server import main

    # Everything imported so far lives as long as the server.
    gc.collect()
    gc.freeze()
    gc.callbacks.append(_freeze_survivors)

    main(sys.argv[1:])
