"""One asyncio loop on a daemon thread: the receiver's and the query listeners' servers.

Both need the same start-up: run an async ``setup`` (bind the sockets) on the new loop, tell
the caller whether it worked, then serve forever; a failed setup is re-raised in the caller's
thread with the loop already closed, so nothing half-started is left behind.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any


def serve_in_thread(
    loop: asyncio.AbstractEventLoop,
    setup: Callable[[], Coroutine[Any, Any, None]],
    name: str,
) -> threading.Thread:
    """Run ``setup()`` on ``loop`` in a new daemon thread, then ``loop.run_forever()``.

    Returns the running thread once ``setup`` has finished; if it raised, the thread is
    joined, the loop closed and the error re-raised here.
    """
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(setup())
        except BaseException as error:  # handed to the caller, which re-raises it
            failure.append(error)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait()
    if failure:
        thread.join()
        loop.close()
        raise failure[0]
    return thread
