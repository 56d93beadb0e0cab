"""Runs the moto server and exits as soon as the process that started it is gone.

The parent may die without cleaning up (kill -9, a test binary that exits); polling the
parent pid means the emulator never outlives the fleet process that owns it.
"""
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

from moto.server import main  # noqa: E402  (imported after the watchdog starts)

main(sys.argv[1:])
