"""Ctrl-C as a request: the first SIGINT sets a flag the frame loop reads between frames (the
current frame finishes, the outputs are closed properly); a second one interrupts at once."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class StopRequest:
    """``requested`` turns true on the first SIGINT; call the object to ask."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def stop_on_sigint(message: str | None = None) -> Iterator[StopRequest]:
    """Install the SIGINT handler for the ``with`` block and restore the previous one after;
    ``message`` is printed to stderr on the first SIGINT. Outside the main thread (where Python
    cannot take signals) the flag just never turns on."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        if message:
            print(message, file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
