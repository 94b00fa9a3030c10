"""Ctrl-C at every point of a ``gen()`` call where CPython may run a signal handler.

CPython runs a Python-level signal handler only where the interpreter checks its "eval
breaker": when a call returns, at a backward jump, on entering a function, and on 3.10 at any
conditional jump taken (``tests/test_interrupts.py`` checks with real signals that a plain store,
a branch not taken and a return never run one). A test that sends real SIGINTs at random moments
hits a given point rarely; this program visits them all, one call of ``gen()`` at a time: an
opcode tracer counts the points of the call and, at the *k*-th, does what CPython does when SIGINT
is pending there: it calls the SIGINT handler installed at that moment (awkgen's stand-in records
it; this program's own raises ``KeyboardInterrupt``). With a burst of *b*, the *b - 1* points
after it get one too: a second and third Ctrl-C while the first unwinds, or (1000) one at every
point to the end of the call. A trace function that raises is switched off by CPython, so a profile
hook switches tracing back on where the next call starts.

After every call it checks that the call returned the next batch (or raised the loader's error
for it, or ``KeyboardInterrupt``), that ``gen.step`` names the next batch not yet had, and that
the program's handler is installed again; after every interrupted call, that a call nobody
interrupts returns the next batch within ``MAX_POINTS`` points (no lost task, no stale deferral);
at the end, that the stream goes on in order.

Run: ``python tests/interrupt_sweep.py BACKEND [BURSTS]``, e.g. ``thread 1,2,3,1000``. Prints
``POINTS``/``CALLS``/``INTERRUPTS`` lines, then ``OK`` or ``WRONG ...`` (exit 1).
"""

from __future__ import annotations

import _signal
import dis
import os
import signal
import sys

import numpy as np

import awkgen

AWKGEN_DIR = os.path.dirname(awkgen.__file__) + os.sep
N = 10**6
MAX_POINTS = 5_000  # a call waits by polling: a batch that never comes shows as a call that never ends
BAD = 7  # ids with id % BAD == 3 fail in the loader: the error path is swept too


def load(ids):
    if int(ids[0]) % BAD == 3:
        raise ValueError(f"id {int(ids[0])} is bad")
    return np.asarray(ids)


_RAISED = object()  # the last instruction of a frame raised (or an exception came up into it)


class Sweep:
    def __init__(self) -> None:
        self.first = 0  # the point that gets the first interrupt (1-based); 0: none
        self.burst = 1
        self.points = 0  # points seen in this call
        self.delivered = 0
        self.prev: dict = {}  # frame -> the instruction it executed last (None: just (re)armed)
        self.rearm = False
        self.top = None  # the sweeping frame: tracing stops below it
        self._instructions: dict = {}

    # -- where CPython may run a handler --------------------------------------------------
    def _instruction(self, code, offset):
        table = self._instructions.get(code)
        if table is None:
            table = self._instructions[code] = {i.offset: i for i in dis.get_instructions(code)}
        return table.get(offset)

    @staticmethod
    def _checks_after(ins, now: int) -> bool:
        """Whether CPython may run a signal handler once *ins* has executed and the frame is at
        offset *now*."""
        if ins is _RAISED:  # a call that raised: CPython goes to the handler without a check
            return False
        if ins is None:
            return True
        if "CALL" in ins.opname:  # (PRE)CALL, CALL_FUNCTION(_EX/_KW), CALL_METHOD, CALL_KW
            return True
        if not (ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs) or not isinstance(ins.argval, int):
            return False
        # A backward jump; or any conditional jump taken (3.10 checks there, forward ones too).
        return ins.argval <= ins.offset or ("IF" in ins.opname and now == ins.argval)

    # -- hooks ------------------------------------------------------------------------------
    def tracer(self, frame, event, arg):
        if event == "call":
            frame.f_trace_opcodes = True
            self.prev[frame] = None  # entering a function: a point
            return self.tracer
        if event == "exception":
            self.prev[frame] = _RAISED
        elif event == "opcode":
            last = self.prev.get(frame, None)
            point = frame not in self.prev or self._checks_after(last, frame.f_lasti)
            self.prev[frame] = self._instruction(frame.f_code, frame.f_lasti)
            if point:
                self.points += 1
                if self.points > MAX_POINTS:
                    raise RuntimeError(f"a gen() call ran past {MAX_POINTS} points: it never ends")
                if self.first and self.first <= self.points < self.first + self.burst:
                    self.delivered += 1
                    if self.delivered == 1:
                        self.where = f"{frame.f_code.co_name}:{frame.f_lineno} after {last.opname if last else 'entry'}"
                    handler = _signal.getsignal(signal.SIGINT)
                    if callable(handler):
                        try:
                            handler(signal.SIGINT, frame)
                        except BaseException:
                            # CPython switches off a trace function that raises: more to come?
                            self.rearm = self.points + 1 < self.first + self.burst
                            raise
        return self.tracer

    def profiler(self, frame, event, arg):
        # Only where a call starts: every frame up the stack is then suspended in a call that has
        # not returned yet, and its next instruction is a point if that call returns (not if it raises).
        if not self.rearm or event not in ("call", "c_call") or sys.gettrace() is not None:
            return
        self.rearm = False
        sys.settrace(self.tracer)
        if event == "call":  # the function starting now: its entry is a point
            frame.f_trace = self.tracer
            frame.f_trace_opcodes = True
            self.prev[frame] = None
        caller = frame.f_back if event == "call" else frame
        while caller is not None and caller is not self.top:
            caller.f_trace = self.tracer
            caller.f_trace_opcodes = True
            self.prev[caller] = None  # suspended in a call: its next instruction is a point
            caller = caller.f_back

    def call(self, gen, first: int, burst: int):
        """One traced ``gen()`` call with interrupts from point *first*: (result, exception)."""
        self.first, self.burst, self.points, self.delivered, self.rearm = first, burst, 0, 0, False
        self.where = None
        self.prev.clear()
        self.top = sys._getframe()
        result = error = None
        sys.setprofile(self.profiler)
        sys.settrace(self.tracer)
        try:
            result = gen()
        except BaseException as exc:  # noqa: BLE001 - judged by the caller
            error = exc
        finally:
            self.rearm = False
            sys.settrace(None)
            sys.setprofile(None)
            self.prev.clear()
        return result, error


def on_sigint(signum, frame):
    raise KeyboardInterrupt


def main(backend: str, bursts: list[int]) -> int:
    ids = np.arange(N)
    kwargs = dict(sample_cls=ids, batch_size=1, shuffle=False)
    if backend == "serial":
        gen = awkgen.DataGenerator(load, ids, **kwargs)
    else:
        gen = awkgen.DataGeneratorMultiProc(load, ids, n_workers=2, backend=backend, **kwargs)
    signal.signal(signal.SIGINT, on_sigint)
    sweep = Sweep()
    expected = 0  # the next batch's id
    calls = interrupts = 0
    wrong = None

    def judge(result, error, label, clean=False):
        nonlocal expected, interrupts, wrong
        if isinstance(error, KeyboardInterrupt) and clean:
            wrong = f"{label}: KeyboardInterrupt from a call that nobody interrupted"
        elif isinstance(error, KeyboardInterrupt):
            interrupts += 1
        elif expected % BAD == 3:
            if not (isinstance(error, awkgen.LoaderError) and f"id {expected} is bad" in str(error.__cause__)):
                wrong = f"{label}: batch {expected} should raise its LoaderError; got {result!r} / {error!r}"
            expected += 1
        elif error is not None:
            wrong = f"{label}: batch {expected}: unexpected {error!r}"
        else:
            x, y = result
            if x.tolist() != [expected] or y.tolist() != [expected]:
                wrong = f"{label}: expected batch {expected}, got x={x.tolist()} y={y.tolist()}"
            expected += 1
        if wrong is None and _signal.getsignal(signal.SIGINT) is not on_sigint:
            wrong = f"{label}: the SIGINT handler left installed is {_signal.getsignal(signal.SIGINT)!r}"
        if wrong is None and gen.step != expected:
            wrong = f"{label}: gen.step is {gen.step}, but the next batch not yet had is {expected}"

    most = 0
    for burst in bursts:
        first, short = 1, 0
        while short < 3 and wrong is None:  # until three calls in a row end before the point
            result, error = sweep.call(gen, first, burst)
            calls += 1
            most = max(most, sweep.points)
            short = short + 1 if sweep.delivered == 0 else 0
            judge(result, error, f"burst {burst}, point {first} of {sweep.points} ({sweep.where})")
            if wrong is None and sweep.delivered:  # then a call left alone must end, in order
                where = sweep.where
                result, error = sweep.call(gen, 0, 1)
                calls += 1
                judge(result, error, f"the call after burst {burst}, point {first} ({where})", clean=True)
            first += 1
        if wrong is not None:
            break
    print("POINTS", most, flush=True)
    print("CALLS", calls, flush=True)
    print("INTERRUPTS", interrupts, flush=True)
    for _ in range(20 if wrong is None else 0):  # the stream goes on in order
        result, error = sweep.call(gen, 0, 1)
        judge(result, error, "after the sweep", clean=True)
        if wrong is not None:
            break
    gen.close()
    if wrong is not None:
        print("WRONG", wrong, flush=True)
        return 1
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], [int(b) for b in (sys.argv[2] if len(sys.argv) > 2 else "1,2,3,1000").split(",")]))
