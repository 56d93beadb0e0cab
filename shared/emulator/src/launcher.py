"""Runs the moto server and exits as soon as the process that started it is gone.

The parent may die without cleaning up (kill -9, a test binary that exits); polling the
parent pid means the emulator never outlives the fleet process that owns it.

Work moto does that changes none of its answers is spared, per request and per garbage
collection:
- it lists its own package directory to route each request (one `stat` per backend
  module), so the list is read once;
- `PutEvents` compiles the same JSONPath expressions again for every target of every
  matching rule (building a parser each time: milliseconds per target), so compiled
  expressions are kept;
- werkzeug logs one access line per request, so only its warnings and errors are kept;
- Python's full garbage collections scan every live object, and moto keeps every item,
  message and execution as objects: with a few thousand connections' rows a full
  collection paused the whole emulator for 180-310 ms, a stall in the middle of whatever
  it was serving. Objects that survive a full collection (moto's modules at startup, then
  whatever lived through the last one) are frozen (`gc.freeze`), so the next full
  collection scans only what is newer: in a 2,000-connection bench the longest pause fell
  to 80 ms. Reference counting still frees frozen objects; a reference cycle among them
  that dies later is not collected and stays in memory until the emulator stops.

One thing is made as AWS does it: DynamoDB applies each item write atomically, but moto
serves requests on many threads and an `UpdateItem` on an item that does not exist yet
creates it unguarded, so concurrent first writes (the first subscribers of a channel's
shard) overwrote each other. Item writes are applied one at a time.

And four task behaviours are made as AWS has them:
- a task that misses its `HeartbeatSeconds` fails with `States.HeartbeatTimeout` (moto said
  `States.Timeout`, so a `Retry` or `Catch` on the heartbeat never matched locally);
- `SendTaskFailure` passes its `cause` on (moto's handler dropped it, so a failed job said
  nothing of why);
- a `.waitForTaskToken` task with `HeartbeatSeconds` takes an answer or a heartbeat that
  arrives as soon as its message is out. moto sends the message first and only then starts
  the heartbeat clock: a `SendTaskSuccess` in between was kept but not seen until the
  heartbeat window ran out, and the task then failed with a heartbeat timeout; a
  `SendTaskHeartbeat` in between was refused as an invalid token. The clock now starts
  already ticked when either came first;
- each attempt of a retried `.waitForTaskToken` task has a token of its own, and a token
  whose attempt has ended is refused with `TaskTimedOut`, in a running execution or an
  ended one. moto made one token for all attempts and never closed it, so a retry could
  take the previous attempt's answer as its own (and hand the task out yet again), and a
  late answer from a worker whose attempt had timed out completed the retry; once the
  execution had ended it called the token invalid.

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
