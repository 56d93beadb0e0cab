"""Runs the moto server and exits as soon as the process that started it is gone.

The parent may die without cleaning up (kill -9, a test binary that exits); polling the
parent pid means the emulator never outlives the fleet process that owns it.

Costs moto pays on every request are taken off, without changing what it answers:
- it lists its own package directory to route each request (one `stat` per backend
  module), so the list is read once;
- `PutEvents` compiles the same JSONPath expressions again for every target of every
  matching rule (building a parser each time: milliseconds per target), so compiled
  expressions are kept;
- werkzeug logs one access line per request, so only its warnings and errors are kept.

One thing is made as AWS does it: DynamoDB applies each item write atomically, but moto
serves requests on many threads and an `UpdateItem` on an item that does not exist yet
creates it unguarded, so concurrent first writes (the first subscribers of a channel's
shard) overwrote each other. Item writes are applied one at a time.
"""
import functools
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

from moto.server import main  # noqa: E402

main(sys.argv[1:])
