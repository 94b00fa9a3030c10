"""Ctrl-C that never corrupts a generator's bookkeeping.

Python raises ``KeyboardInterrupt`` in the main thread between any two bytecodes.
Raised while a generator moves a batch between its queues (taken from the executor,
not yet recorded), it would lose that batch, and the next call would wait forever
for it or return batches out of order. So the generator runs its bookkeeping under
:class:`deferred_sigint`:

- while inside, a SIGINT (a terminal's Ctrl-C, a notebook's interrupt,
  ``_thread.interrupt_main``) is *recorded* by a stand-in handler, not raised;
- :meth:`deferred_sigint.check` delivers a recorded interrupt: it calls the handler
  that was installed before (normally raising ``KeyboardInterrupt``). The generator
  calls it only where its state is consistent: between two short waits for a batch,
  so Ctrl-C still stops a waiting call within a tenth of a second;
- leaving the block (or :meth:`deferred_sigint.finish`) restores the handler and
  delivers what is still recorded. The generator finishes *inside* a ``try`` that puts
  the batch it took back if a ``KeyboardInterrupt`` comes out, so an interrupt landing
  at any bytecode up to the return itself loses nothing;
- :func:`allow_interrupts` re-opens the window inside, around user code that runs in
  the caller's thread (the blocking generator's loader), so Ctrl-C interrupts it at once.

Only the main thread ever runs Python signal handlers, so elsewhere these are no-ops,
as they are when SIGINT is not handled by a Python function (``SIG_IGN``/``SIG_DFL``)
and when nested (the outermost block does the work). Handlers are swapped with the C
functions of ``_signal``, not ``signal.signal`` (a Python wrapper, where an interrupt could
land between installing the stand-in and recording that it is installed). The swap
costs two ``sigaction`` calls per batch.
"""

from __future__ import annotations

import _signal
import _thread
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["deferred_sigint", "allow_interrupts"]

_active: deferred_sigint | None = None  # the outermost open block (main thread only)
#: The main thread's ident, compared per batch (cheaper than ``threading.current_thread()``). Python
#: runs signal handlers in the thread that initialised the interpreter; a forked child's main thread
#: is the forking thread, with a new ident: ``_after_fork`` records it.
_MAIN_IDENT = threading.main_thread().ident


def _after_fork() -> None:
    global _MAIN_IDENT
    _MAIN_IDENT = threading.main_thread().ident


os.register_at_fork(after_in_child=_after_fork)


def main_ident() -> int | None:
    """The ident of the thread that runs Python signal handlers (this process's main thread)."""
    return _MAIN_IDENT


class deferred_sigint:  # noqa: N801 - used as a context manager, named like one
    __slots__ = ("_original", "_pending", "_outer")

    def __init__(self) -> None:
        self._original: Any = None
        self._pending: tuple[int, FrameType | None] | None = None
        self._outer = False

    def __enter__(self) -> deferred_sigint:
        global _active
        if _active is not None or _thread.get_ident() != _MAIN_IDENT:
            return self
        current = _signal.getsignal(signal.SIGINT)
        if not callable(current):  # SIG_IGN, SIG_DFL or a handler outside Python: nothing is raised
            return self
        self._original = current
        _signal.signal(signal.SIGINT, self._record)  # from here on, interrupts are only recorded
        self._outer = True
        _active = self
        return self

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._pending = (signum, frame)

    @property
    def pending(self) -> bool:
        return self._pending is not None

    @property
    def deferring(self) -> bool:
        """Whether this block defers SIGINT (the outermost block, in the main thread, with a
        Python handler): only then can ``KeyboardInterrupt`` arrive between two bytecodes."""
        return self._outer

    def check(self) -> None:
        """Deliver a recorded interrupt now (the original handler usually raises)."""
        if self._pending is None or not self._outer:
            return
        (signum, frame), self._pending = self._pending, None
        _signal.signal(signal.SIGINT, self._original)
        try:
            self._original(signum, frame)
        finally:
            if _active is self:  # the handler returned (or raised): defer again until the block ends
                _signal.signal(signal.SIGINT, self._record)

    def finish(self) -> None:
        """Restore the handler and deliver a recorded interrupt (may raise). Idempotent."""
        global _active
        if not self._outer:
            return
        _active = None
        self._outer = False
        _signal.signal(signal.SIGINT, self._original)
        if self._pending is not None:
            (signum, frame), self._pending = self._pending, None
            self._original(signum, frame)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish()


class allow_interrupts:  # noqa: N801 - a context manager
    """Inside an open :class:`deferred_sigint`, let SIGINT raise as usual for a while."""

    __slots__ = ("_guard",)

    def __enter__(self) -> allow_interrupts:
        self._guard = _active if _thread.get_ident() == _MAIN_IDENT else None
        if self._guard is not None:
            self._guard.check()
            _signal.signal(signal.SIGINT, self._guard._original)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._guard is not None and _active is self._guard:
            _signal.signal(signal.SIGINT, self._guard._record)
