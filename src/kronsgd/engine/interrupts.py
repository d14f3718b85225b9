"""Ctrl-C without damage: while a run is inside the engine, SIGINT only asks it to stop.

Python raises KeyboardInterrupt between any two bytecodes of the main thread, so an
interrupt could land between two writes that belong together (a record reserved and not
published; P folded and the log not told). Inside ``interrupt_guard()`` the SIGINT handler
only records the request; the engine calls ``check()`` at the points where its state is
consistent — between steps, after the workers have stopped and folded, after a checkpoint
is written — and only there raises KeyboardInterrupt (or calls the handler that was
installed before, if the user had their own). User code the engine calls (callbacks) runs
with the previous handler, under ``released()``.

Only the main thread receives signals; elsewhere the guard does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_ACTIVE: list[InterruptGuard] = []  # the guard whose handler is installed (nested guards share it)


class InterruptGuard:
    """The state of one ``interrupt_guard()``: whether Ctrl-C was pressed and what to do about it."""

    def __init__(self, previous=None):
        self.requested = False
        self._previous = previous

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def check(self) -> None:
        """At a consistent point: act on a Ctrl-C pressed since the last check."""
        if self.requested:
            self.requested = False
            previous = self._previous
            if callable(previous) and previous is not signal.default_int_handler:
                previous(signal.SIGINT, None)  # the user's own handler decides
            else:
                raise KeyboardInterrupt

    @contextlib.contextmanager
    def released(self):
        """Run user code with the handler that was there before (Ctrl-C raises at once inside it)."""
        if self._previous is None:
            yield
            return
        signal.signal(signal.SIGINT, self._previous)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, self._handler)


@contextlib.contextmanager
def interrupt_guard():
    """Defer SIGINT to the engine's consistent points for the duration of the block (main thread only)."""
    if _ACTIVE:  # nested: the outer guard already holds the handler
        yield _ACTIVE[-1]
        return
    if threading.current_thread() is not threading.main_thread():
        yield InterruptGuard()  # no signal reaches this thread: nothing to defer
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):  # ignored, or not Python's to handle: leave it so
        yield InterruptGuard()
        return
    guard = InterruptGuard(previous)
    signal.signal(signal.SIGINT, guard._handler)
    _ACTIVE.append(guard)
    try:
        yield guard
    finally:
        _ACTIVE.pop()
        signal.signal(signal.SIGINT, previous)
    guard.check()  # pressed during the last stretch, with no exception on its way out: honour it now
