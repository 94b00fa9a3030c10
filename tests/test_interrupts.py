"""Ctrl-C at every moment of a call, proved point by point rather than sampled.

``tests/test_hangs.py`` sends real interrupts at random moments; a given moment is hit rarely. Here
``tests/interrupt_sweep.py`` visits every point of a call where CPython may run a signal handler,
and a check with real signals confirms, on the interpreter running the tests, where those points
are. Both run in ``make core`` on the oldest and newest Python too.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

import awkgen
from tests.test_hangs import ROOT, run_child

SWEEP = os.path.join(ROOT, "tests", "interrupt_sweep.py")


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_ctrl_c_at_every_point_of_a_call_and_again_while_it_unwinds_loses_nothing(tmp_path, backend):
    # tests/interrupt_sweep.py: one call per point where CPython may run a handler, with bursts of
    # one, two and three interrupts; every call must return its batch, raise its error or raise
    # KeyboardInterrupt, leave gen.step on the next batch not yet had and the handler installed.
    # Before the handover (generator._next_batch), an interrupt right after _next_batch returned
    # inside gen() lost that batch (CI: a 3 s run of the random test above hung once).
    child = run_child(tmp_path, f"""
        sys.argv = ["interrupt_sweep", BACKEND, "1,2,3,1000"]
        import runpy
        runpy.run_path({SWEEP!r}, run_name="__main__")
    """, params={"BACKEND": backend}, timeout=120)
    calls, interrupts = child.value("CALLS"), child.value("INTERRUPTS")
    assert calls > 300 and interrupts > calls // 3, child.log  # the sweep really interrupted


EVAL_BREAKER = """
    import _thread, collections, dis

    def handler(signum, frame):
        seen.append((frame.f_code, frame.f_lasti))

    class Generator:
        pass

    def deliver(gen, n):  # the shape of a public method's last lines: a branch not taken, a store, return
        batch = None
        for i in range(n):
            gen._handover = (i, gen)
            batch = (i,)
            handed = True
            if handed:
                gen._handover = None
            gen.last = batch
            if not handed:  # a forward branch taken (3.10 checks there)
                continue
        return batch

    seen = []
    signal.signal(signal.SIGINT, handler)
    stop = threading.Event()

    def pinger():
        while not stop.is_set():
            _thread.interrupt_main()
            time.sleep(0.00002)

    thread = threading.Thread(target=pinger)
    thread.start()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        deliver(Generator(), 10_000)
    stop.set()
    thread.join()
    at = {i.offset: i.opname for i in dis.get_instructions(deliver)}
    ops = [at.get(lasti, "RESUME" if lasti < 0 else f"?{lasti}") for code, lasti in seen if code is deliver.__code__]
    print("WHERE", dict(collections.Counter(ops)))
    print("OK")
"""


def test_cpython_runs_signal_handlers_only_at_calls_backward_jumps_and_function_entry(tmp_path):
    # The rule _next_batch and tests/interrupt_sweep.py rest on, checked on this interpreter with
    # real signals: never at a plain store, a branch not taken or a return.
    where = run_child(tmp_path, EVAL_BREAKER, timeout=60).value("WHERE")
    assert sum(where.values()) > 20, where  # the loop really was interrupted
    allowed = {"RESUME", "JUMP_BACKWARD", "JUMP_ABSOLUTE", "FOR_ITER"}  # RESUME: entry (3.10: f_lasti -1)
    if sys.version_info < (3, 11):  # 3.10 checks at every conditional jump taken, forward ones too
        allowed |= {"POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE"}
    assert all(op in allowed or "CALL" in op for op in where), where  # (PRE)CALL*: when a call returns


def test_a_batch_the_main_thread_took_but_never_received_is_the_next_one_any_thread_gets():
    # What a call interrupted between taking a batch and returning it leaves behind: the batch
    # handed over, never cleared. The next call gives it, from another thread too, and the
    # cursor (gen.step, state_dict) names it meanwhile.
    gen = awkgen.DataGeneratorMultiProc(np.asarray, list(range(100)), batch_size=1, shuffle=False,
                                        n_workers=2, backend="thread")
    with gen:
        assert gen()[0].tolist() == [0]
        batch, handed = gen._next_batch()  # taken in the main thread, never handed to the caller
        assert handed and batch[0].tolist() == [1]
        assert gen.step == 1 and gen.state_dict()["step"] == 1
        got: list = []
        thread = threading.Thread(target=lambda: got.append(gen()[0].tolist()))
        thread.start()
        thread.join(30)
        assert got == [[1]]
        assert [gen()[0].tolist() for _ in range(3)] == [[2], [3], [4]]
        assert gen.stats().batches == 5
