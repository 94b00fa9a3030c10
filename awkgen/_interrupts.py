"""Ctrl-C that never corrupts a generator's bookkeeping.

CPython runs a Python signal handler, and so raises ``KeyboardInterrupt``, in the main thread
where its interpreter loop checks for pending work: when a call returns, at a backward jump, on
entering a Python function and, on 3.10, at any conditional jump taken (3.10 to 3.13; never at a
plain load or store, a branch not taken or a ``return``: ``tests/test_interrupts.py`` checks this
on the running interpreter). Raised while a
generator moves a batch between its queues, it would lose that batch, and the next call would
wait forever for it or return batches out of order. So the generator runs its bookkeeping under
:class:`deferred_sigint`:

- while inside, a SIGINT (a terminal's Ctrl-C, a notebook's interrupt,
  ``_thread.interrupt_main``) is *recorded* by a stand-in handler, not raised;
- :meth:`deferred_sigint.check` delivers a recorded interrupt: it calls the handler
  that was installed before (normally raising ``KeyboardInterrupt``). The generator
  calls it only where its state is consistent: between two short waits for a batch,
  so Ctrl-C still stops a waiting call within a tenth of a second;
- :meth:`deferred_sigint.finish` restores the handler and delivers what is still recorded.
  What the generator took by then it leaves *handed over* (see
  ``BatchGenerator._next_batch``), so an interrupt from there to the return loses nothing;
- the blocking generator's executor re-opens the window inside, around the loader (user code in
  the caller's thread): it installs the block's ``original`` handler, so
  Ctrl-C interrupts the loader at once, and puts ``record`` back after.

Rules that keep this true under a second (and third) Ctrl-C while the first unwinds
(``tests/interrupt_sweep.py`` interrupts every point of a call, in bursts):

- Whoever installs the original handler inside a block puts the stand-in back *first thing in a
  ``finally``* of the same frame (a ``finally`` clause reaches its first call with no point where
  a handler could run). So an exception never unwinds into the generator's bookkeeping with the
  original handler installed, and ``finish()``'s own entry, a point, only records.
- There is no module-level "active block" that an escaped exception could leave stale: a block is
  in effect exactly while its stand-in is the installed handler. A block entered while another's
  stand-in is installed is nested and inert; one entered inside an interruptible window (a
  loader that calls another generator) defers for itself.

Only the main thread ever runs Python signal handlers, so elsewhere these are no-ops, as they
are when SIGINT is not handled by a Python function (``SIG_IGN``/``SIG_DFL``). Handlers are
swapped with the C functions of ``_signal``, not ``signal.signal`` (a Python wrapper, where an
interrupt could land between installing the stand-in and recording that it is installed). The
swap costs two ``sigaction`` calls per batch.
"""

from __future__ import annotations

import _signal
import _thread
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["deferred_sigint", "main_ident"]

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
    """Record SIGINT instead of raising it, until :meth:`check` or :meth:`finish` delivers it.

    ``original`` (the handler to deliver to) and ``record`` (the stand-in) are plain attributes,
    not properties: code that swaps them in a ``finally`` must reach the swap with no Python call
    on the way, where a handler could run.
    """

    __slots__ = ("original", "_pending", "_outer")

    def __init__(self) -> None:
        self.original: Any = None
        self._pending: tuple[int, FrameType | None] | None = None
        self._outer = False

    def __enter__(self) -> deferred_sigint:
        if _thread.get_ident() != _MAIN_IDENT:
            return self
        current = _signal.getsignal(signal.SIGINT)
        if not callable(current) or isinstance(getattr(current, "__self__", None), deferred_sigint):
            return self  # SIG_IGN, SIG_DFL, a handler outside Python, or inside another block: inert
        self.original = current
        _signal.signal(signal.SIGINT, self.record)  # from here on, interrupts are only recorded
        self._outer = True
        return self

    def record(self, signum: int, frame: FrameType | None) -> None:
        self._pending = (signum, frame)

    @property
    def pending(self) -> bool:
        """Whether an interrupt is recorded and not yet delivered."""
        return self._pending is not None

    @property
    def deferring(self) -> bool:
        """Whether this block defers SIGINT (in the main thread, with a Python handler, not
        nested): only then can ``KeyboardInterrupt`` arrive between two bytecodes."""
        return self._outer

    def check(self) -> None:
        """Deliver a recorded interrupt now (the original handler usually raises)."""
        if self._pending is None or not self._outer:
            return
        (signum, frame), self._pending = self._pending, None
        try:
            _signal.signal(signal.SIGINT, self.original)
            self.original(signum, frame)
        finally:  # first thing, whatever was raised (and however often): defer again
            if self._outer:
                _signal.signal(signal.SIGINT, self.record)

    def finish(self) -> None:
        """Restore the handler and deliver a recorded interrupt (may raise). Idempotent."""
        if not self._outer:
            return
        self._outer = False
        _signal.signal(signal.SIGINT, self.original)
        if self._pending is not None:
            (signum, frame), self._pending = self._pending, None
            self.original(signum, frame)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish()


def active() -> deferred_sigint | None:
    """The block in effect in this thread (its stand-in is SIGINT's handler), if any."""
    if _thread.get_ident() != _MAIN_IDENT:
        return None
    owner = getattr(_signal.getsignal(signal.SIGINT), "__self__", None)
    return owner if isinstance(owner, deferred_sigint) else None
