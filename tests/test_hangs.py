"""No configuration hangs (SPEC sections 4-5): each test reproduces a way a generator used to
deadlock, spin or lose a batch, and checks what must happen instead.

Every scenario runs in a child interpreter with a deadline, so a regression fails the test
instead of stalling the suite. The child gets a private ``AWKGEN_SHM_DIR``, which must be
empty once it exits, and prints ``OK`` when it got to its end.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.leaks import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = """\
import faulthandler, os, signal, sys, threading, time
import numpy as np
import awkgen

faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks where a hung child is


def make(backend, loader, ids, **kwargs):
    if backend == "serial":
        kwargs.pop("n_workers", None)
        kwargs.pop("prefetch", None)
        return awkgen.DataGenerator(loader, ids, **kwargs)
    return awkgen.DataGeneratorMultiProc(loader, ids, backend=backend, **kwargs)

"""


@dataclass
class Child:
    returncode: int
    out: str
    err: str

    @property
    def log(self) -> str:
        """All about the run, for assertion messages."""
        return f"exit code {self.returncode}\n--- stdout\n{self.out[-4000:]}\n--- stderr\n{self.err[-4000:]}"

    def lines(self, marker: str) -> list[str]:
        """The text after *marker* on each stdout line that starts with it."""
        return [line[len(marker):].strip() for line in self.out.splitlines() if line.startswith(marker + " ")]

    def value(self, marker: str):
        """The Python literal printed after *marker* (exactly one such line)."""
        found = self.lines(marker)
        assert len(found) == 1, f"expected one {marker!r} line\n{self.log}"
        return ast.literal_eval(found[0])


def run_child(tmp_path: Path, body: str, *, timeout: float = 60, params: dict | None = None,
              env: dict | None = None, cwd: Path | None = None, stdin: bool = False,
              shm: Path | None = None, may_remain: str = "") -> Child:
    """Run *body* (after ``PRELUDE`` and ``NAME = value`` lines for *params*) in a new interpreter,
    in its own session so that a hung child is killed together with its workers and forkserver.

    *stdin* gives the program on standard input (``python -``) instead of as a script file.
    The child's shared-memory directory (*shm*, by default a fresh private one) must be empty
    once it has exited, but for files whose names match the regular expression *may_remain*.
    """
    if shm is None:
        shm = tmp_path / "shm"
        shm.mkdir()
    child_env = {**os.environ, "AWKGEN_SHM_DIR": str(shm), "RAY_AUTH_MODE": "disabled",
                 "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
                 **(env or {})}
    code = PRELUDE + "".join(f"{name} = {value!r}\n" for name, value in (params or {}).items()) \
        + textwrap.dedent(body)
    if stdin:
        args, program = [sys.executable, "-"], code
    else:
        script = tmp_path / "child.py"
        script.write_text(code)
        args, program = [sys.executable, str(script)], None
    proc = subprocess.Popen(args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=child_env, start_new_session=True)
    try:
        out, err = proc.communicate(program, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGUSR1)  # its threads' stacks, to stderr
            time.sleep(1.0)
            os.killpg(proc.pid, signal.SIGKILL)  # the child, its workers and its forkserver
        except ProcessLookupError:
            pass
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = "", "(output lost: a process outside the child's group held its pipes)"
        pytest.fail(f"the child hung: still running after {timeout:g} s, killed\n"
                    f"{Child(proc.returncode, out or '', err or '').log}", pytrace=False)
    child = Child(proc.returncode, out, err)
    assert child.returncode == 0, child.log
    assert "OK" in child.out.splitlines(), child.log

    def left() -> list[str]:
        return sorted(n for n in os.listdir(shm) if not (may_remain and re.fullmatch(may_remain, n)))

    assert wait_until(lambda: not left(), 5.0), f"shared memory left in {shm}: {left()}\n{child.log}"
    return child


def assert_in_order_or_awkgen_errors(events: list, n: int, child: Child, max_errors: int = 1) -> None:
    """*events* (one per call: the batch's first id, or the text of an AwkgenError) must be
    batches 0..n-1 in order, where at most *max_errors* of them may have failed instead."""
    assert len(events) == n, child.log
    errors = [i for i, event in enumerate(events) if isinstance(event, str)]
    assert len(errors) <= max_errors, child.log
    assert [e for i, e in enumerate(events) if i not in errors] == [i for i in range(n) if i not in errors], child.log
    assert not any("manager thread stopped" in events[i] for i in errors), child.log


# -- 1. garbage collection while the slot ring holds its lock ------------------------------------

def test_gc_of_batches_in_reference_cycles_never_deadlocks_the_slot_ring(tmp_path):
    # A batch dropped inside a reference cycle is freed by the cyclic GC, which may run while
    # SlotRing.acquire holds its lock (it allocates); the batch's lease then returns its slot.
    # A low first threshold makes that collection land inside acquire every time (with the
    # default 700 it did in about one run out of four).
    child = run_child(tmp_path, """
        import gc
        gc.set_threshold(10, 100, 100)

        def loader(ids):
            return np.ones(32768)  # 256 KiB: shared memory

        gen = awkgen.DataGeneratorMultiProc(loader, list(range(1000)), batch_size=1, n_workers=2)
        for _ in range(3000):
            (batch,) = gen()
            cycle = [batch]
            cycle.append(cycle)
            del batch, cycle
        gen.close()
        print("OK")
    """, timeout=60)
    assert not child.err.strip(), child.log


# -- 2. tasks and replies both too large for the socket buffers ------------------------------------

def test_quick_loader_with_large_ids_and_results_never_deadlocks_the_pipes(tmp_path):
    # Quick loader: many tasks go to one worker in one write; 60 KB of ids each way per batch
    # (just under the shared-memory threshold): the caller must not block writing tasks while
    # the worker blocks writing replies.
    run_child(tmp_path, """
        def loader(ids):
            return ids.astype(np.float64)  # 7500 * 8 = 60000 bytes: through the pipe

        ids = np.arange(200_000)
        gen = awkgen.DataGeneratorMultiProc(loader, ids, batch_size=7500, n_workers=2, prefetch=16, shuffle=False)
        steps = gen.steps_per_epoch
        for i in range(300):
            (x,) = gen()
            step = i % steps
            assert x[0] == step * 7500 and len(x) == min(7500, 200_000 - step * 7500), (i, x[:3], len(x))
        gen.close()
        print("OK")
    """, timeout=60)


# -- 3. workers that die before they are ready ---------------------------------------------------

DIES_BEFORE_READY = """
    import ctypes

    class Loader:
        def __call__(self, ids):
            return np.asarray(ids)

        def __reduce__(self):  # unpickling the loader in a worker kills the worker
            return REDUCE

    gen = awkgen.DataGeneratorMultiProc(Loader(), list(range(10)), batch_size=2, n_workers=2)
    for call in range(2):
        start = time.monotonic()
        try:
            gen()
            print("BATCH")
        except awkgen.AwkgenError as exc:
            print("ERROR", repr((type(exc).__name__, [c.__name__ for c in type(exc).__mro__], str(exc))))
        print("SECONDS", time.monotonic() - start)
    gen.close()
    print("OK")
"""


@pytest.mark.parametrize("reduce_to, says", [
    pytest.param("(os._exit, (7,))", r"\b7\b", id="os_exit"),
    pytest.param("(ctypes.string_at, (0,))", r"SIGSEGV", id="segfault"),
])
def test_workers_that_die_before_ready_raise_worker_start_error(tmp_path, reduce_to, says):
    body = DIES_BEFORE_READY.replace("return REDUCE", f"return {reduce_to}")
    child = run_child(tmp_path, body, timeout=45)
    errors = child.lines("ERROR")
    seconds = [float(s) for s in child.lines("SECONDS")]
    assert len(errors) == 2 and "BATCH" not in child.out, child.log  # every call fails: no worker can start
    name, mro, message = ast.literal_eval(errors[0])
    assert name == "WorkerStartError" and "AwkgenError" in mro, child.log
    assert re.search(r"died before .*ready", message, re.IGNORECASE), message
    assert re.search(says, message), message
    assert seconds[0] < 10 and seconds[1] < 10, child.log
    assert ast.literal_eval(errors[1])[0] in ("WorkerStartError", "GeneratorStoppedError"), child.log


def test_a_broken_pool_leaves_nothing_in_shared_memory_even_unclosed(tmp_path):
    # A program that gives up on a pool that cannot start (os._exit, a DataLoader worker's end)
    # never closes it, and no worker is left to clean up after it: the pool does it when it breaks.
    body = DIES_BEFORE_READY.replace("return REDUCE", "return (os._exit, (7,))").replace(
        '    gen.close()\n    print("OK")', '    print("OK", flush=True)\n    os._exit(0)')
    assert "os._exit(0)" in body
    child = run_child(tmp_path, body, timeout=45)
    assert ast.literal_eval(child.lines("ERROR")[0])[0] == "WorkerStartError", child.log


def _other_awkgen(tmp_path: Path, patch: list[tuple[str, str, str]]) -> dict:
    """A program that runs this checkout's awkgen while its workers run a copy patched by
    *patch*, ``(file, old text, new text)`` each.

    The program's own directory holds a link to this awkgen (it comes first on the program's
    sys.path); the forkserver, a new interpreter started in another directory, finds the copy
    on PYTHONPATH, as when PYTHONPATH names an older tree. Returns run_child's arguments."""
    import shutil

    copy = tmp_path / "other"
    shutil.copytree(os.path.join(ROOT, "awkgen"), copy / "awkgen", ignore=shutil.ignore_patterns("__pycache__"))
    for name, old, new in patch:
        path = copy / "awkgen" / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new))
    os.symlink(os.path.join(ROOT, "awkgen"), tmp_path / "awkgen")
    (tmp_path / "elsewhere").mkdir()
    return {"env": {"PYTHONPATH": str(copy)}, "cwd": tmp_path / "elsewhere"}


OTHER_AWKGEN = """
    def loader(ids):
        return np.asarray(ids)

    assert awkgen.__file__.startswith(os.path.dirname(os.path.abspath(__file__))), awkgen.__file__
    gen = awkgen.DataGeneratorMultiProc(loader, list(range(10)), batch_size=2, n_workers=2)
    for call in range(2):
        start = time.monotonic()
        try:
            gen()
            print("BATCH")
        except awkgen.AwkgenError as exc:
            print("ERROR", repr((type(exc).__name__, str(exc))))
        print("SECONDS", time.monotonic() - start)
    time.sleep(1.0)  # a pool that respawned workers would go on printing their tracebacks meanwhile
    gen.close()
    print("OK")
"""

_OLD_SIGNATURE = ("def worker_main(conn: Any, lifeline: Any, setup: dict[str, Any]) -> None:",
                  "def worker_main(conn, lifeline, loader_bytes, parent_pid, blas_threads, shm_dir, paths):")


_NO_CHECK = ("executors/_worker.py", "if not IDENTITY.same_code(parent_identity):", "if False:")


@pytest.mark.parametrize("other, says", [
    pytest.param([("__init__.py", '__version__ = "', '__version__ = "old-')],
                 r"they run awkgen old-\S+ from \S*other/awkgen .*this process runs awkgen \S+ from", id="version"),
    pytest.param([("executors/_identity.py", "digest.hexdigest()[:16]", "digest.hexdigest()[:15] + '!'")],
                 r"they run awkgen \S+ from \S*other/awkgen \(files \w+!\)", id="files"),
    pytest.param([_NO_CHECK], r"they run awkgen \S+ from \S*other/awkgen", id="checked_by_the_parent"),
    pytest.param([_NO_CHECK, ("executors/_worker.py", "dumps((READY, tuple(IDENTITY)))", "dumps((READY,))")],
                 r"does not say which", id="ready_without_identity"),
    pytest.param([("executors/_worker.py", *_OLD_SIGNATURE)],
                 r"died before they were ready.*another awkgen than this process's awkgen", id="old_signature"),
])
def test_workers_running_another_awkgen_fail_clearly_within_seconds(tmp_path, other, says):
    # The parent imports this checkout; the workers' forkserver imports a patched copy.
    child = run_child(tmp_path, OTHER_AWKGEN, timeout=60, **_other_awkgen(tmp_path, other))
    errors = [ast.literal_eval(e) for e in child.lines("ERROR")]
    assert len(errors) == 2 and "BATCH" not in child.out, child.log
    assert all(name == "WorkerStartError" for name, _ in errors), child.log
    assert re.search(says, errors[0][1], re.DOTALL), errors[0][1]
    assert all(float(s) < 10 for s in child.lines("SECONDS")), child.log
    # No respawn loop: a handful of workers started, each died once.
    assert child.err.count("Traceback") <= 6, child.log


def test_a_worker_stuck_before_ready_breaks_the_pool_instead_of_leaving_calls_waiting(tmp_path):
    body = ("import awkgen.executors.process\nawkgen.executors.process.START_TIMEOUT_S = 2\n"
            + textwrap.dedent(DIES_BEFORE_READY).replace("return REDUCE", "return (time.sleep, (600,))"))
    child = run_child(tmp_path, body, timeout=45)
    errors = child.lines("ERROR")
    assert len(errors) == 2 and "BATCH" not in child.out, child.log
    name, _, message = ast.literal_eval(errors[0])
    assert name == "WorkerStartError" and "not ready within 2 s" in message, child.log
    assert all(float(s) < 10 for s in child.lines("SECONDS")), child.log


def test_spawned_workers_of_a_stdin_program_fail_clearly_instead_of_respawning(tmp_path):
    # With spawn, a worker re-runs the parent's __main__; a program read from stdin has none to
    # re-run, so workers die at start. That must be one clear error, not an endless respawn loop.
    child = run_child(tmp_path, """
        def loader(ids):
            return np.asarray(ids)

        start = time.monotonic()
        try:
            with awkgen.DataGeneratorMultiProc(loader, list(range(10)), batch_size=2, n_workers=2) as gen:
                batches = [gen()[0].tolist() for _ in range(3)]
            print("BATCHES", batches)
        except awkgen.AwkgenError as exc:
            print("ERROR", repr((type(exc).__name__, str(exc))))
        print("SECONDS", time.monotonic() - start)
        print("OK")
    """, stdin=True, env={"AWKGEN_START_METHOD": "spawn"}, timeout=60)
    assert float(child.value("SECONDS")) < 20, child.log
    if child.lines("BATCHES"):  # the workers managed after all
        assert child.value("BATCHES") == [[0, 1], [2, 3], [4, 5]], child.log
    else:
        name, message = child.value("ERROR")
        assert re.search(r"start|ready", message, re.IGNORECASE), child.log  # says the workers cannot start


# -- 4. making a shared-memory slot fails -------------------------------------------------------

SLOT_FAULT = """
    import errno
    import secrets

    import awkgen.transport

    secrets.token_hex = lambda nbytes=None: "feedf00d"  # the pool's name, so a planted file can collide
    real_create = awkgen.transport.create_segment
    creates = []

    def create_segment(path, nbytes):
        creates.append(path)
        if FAULT == "exists" and len(creates) == 3:
            raise FileExistsError(errno.EEXIST, "File exists", path)
        if FAULT == "emfile" and len(creates) == 3:
            raise OSError(errno.EMFILE, "Too many open files", path)
        return real_create(path, nbytes)

    awkgen.transport.create_segment = create_segment
    if FAULT == "planted":  # the name the pool's third segment gets
        with open(os.path.join(os.environ["AWKGEN_SHM_DIR"], f"awkgen-{os.getpid()}-feedf00d-2"), "wb") as f:
            f.write(b"somebody else's")

    def loader(ids):
        return np.full(10_000, ids[0], dtype=np.float64)  # 80 KB: shared memory

    gen = awkgen.DataGeneratorMultiProc(loader, list(range(1000)), batch_size=1, n_workers=2, shuffle=False)
    kept, events = [], []  # batches kept alive: every task needs a new slot
    for i in range(40):
        if FAULT == "chdir" and i == 5:
            os.chdir(ELSEWHERE)
        try:
            (x,) = gen()
            kept.append(x)
            events.append(int(x[0]))
        except awkgen.AwkgenError as exc:
            events.append(f"{type(exc).__name__}: {exc}")
    print("EVENTS", repr(events))
    print("CREATES", len(creates))
    gen.close()
    print("OK")
"""


@pytest.mark.parametrize("fault", ["exists", "emfile", "planted", "chdir"])
def test_a_slot_that_cannot_be_made_never_loses_its_batch(tmp_path, fault):
    if fault == "chdir":  # a relative AWKGEN_SHM_DIR, then the program changes directory
        run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
        (run_dir / "shm").mkdir(parents=True)
        elsewhere.mkdir()
        child = run_child(tmp_path, SLOT_FAULT, params={"FAULT": fault, "ELSEWHERE": str(elsewhere)},
                          env={"AWKGEN_SHM_DIR": "shm"}, cwd=run_dir, shm=run_dir / "shm", timeout=45)
        assert not os.listdir(elsewhere), os.listdir(elsewhere)
    else:
        child = run_child(tmp_path, SLOT_FAULT, params={"FAULT": fault}, timeout=45,
                          may_remain=r"awkgen-\d+-feedf00d-2")  # the planted file is not the pool's to remove
    assert child.value("CREATES") >= 3, child.log  # the fault was met
    events = child.value("EVENTS")
    assert_in_order_or_awkgen_errors(events, 40, child)
    assert "Traceback" not in child.err, child.log


# -- 5. Ctrl-C at random moments in a training loop ---------------------------------------------

CTRL_C = """
    import _thread
    import random

    def loop():
        got, interrupts = [], 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                (x,) = gen()
            except KeyboardInterrupt:
                interrupts += 1
                continue
            got.append(int(x[0]))
        return got, interrupts

    AWKGEN_DIR = os.path.dirname(awkgen.__file__) + os.sep

    def on_sigint(signum, frame):
        # Ctrl-C inside gen() (awkgen's code, or the loader it calls) is under test. One that
        # lands in loop() itself would lose a batch the test already has: ignore those.
        inside = frame
        while inside is not None and not inside.f_code.co_filename.startswith(AWKGEN_DIR):
            inside = inside.f_back
        if inside is not None or frame is None:
            raise KeyboardInterrupt

    N = 100_000
    gen = make(BACKEND, np.asarray, list(range(N)), batch_size=1, n_workers=2, shuffle=False)
    stop = threading.Event()

    def interrupter():
        rnd = random.Random(0)
        while not stop.wait(rnd.uniform(0.001, 0.005)):
            _thread.interrupt_main()

    signal.signal(signal.SIGINT, on_sigint)
    thread = threading.Thread(target=interrupter, daemon=True)
    thread.start()
    try:
        got, interrupts = loop()
    finally:
        stop.set()
        thread.join()
        signal.signal(signal.SIGINT, lambda *a: None)  # a last pending interrupt must not hit close()
    print("BATCHES", len(got), "INTERRUPTS", interrupts, flush=True)
    faulthandler.dump_traceback_later(15, exit=True)  # once Ctrl-C stops, the stream must go on
    got += [int(gen()[0][0]) for _ in range(5)]
    faulthandler.cancel_dump_traceback_later()
    bad = next((i for i, b in enumerate(got) if b != i % N), None)
    print("FIRST_WRONG", repr(None if bad is None else (bad, got[max(0, bad - 3):bad + 4])))
    gen.close()
    print("OK")
"""


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_ctrl_c_at_random_moments_never_skips_repeats_or_hangs(tmp_path, backend):
    child = run_child(tmp_path, CTRL_C, params={"BACKEND": backend}, timeout=45)
    assert child.value("FIRST_WRONG") is None, child.log
    batches, interrupts = (int(n) for n in re.fullmatch(r"(\d+) INTERRUPTS (\d+)", child.lines("BATCHES")[0]).groups())
    assert batches > 50 and interrupts > 20, child.log  # the loop really was interrupted, and went on


# -- 6. fork -------------------------------------------------------------------------------------

FORK = """
    def loader(ids):
        time.sleep(0.002)  # the parent's workers are busy when the child acts
        return np.full(10_000, ids[0], dtype=np.float64)  # shared memory

    gen = awkgen.DataGeneratorMultiProc(loader, list(range(10_000)), batch_size=1, n_workers=2, shuffle=False)
    got = [int(gen()[0][0]) for _ in range(5)]
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        signal.alarm(15)  # a child that hangs dies
        if CHILD == "exit":
            sys.exit(0)  # atexit and finalizers run in the child
        try:
            gen()
            print("CHILD got a batch", flush=True)
        except awkgen.AwkgenError as exc:
            print("CHILD_ERROR", repr((type(exc).__name__, [c.__name__ for c in type(exc).__mro__], str(exc))),
                  flush=True)
        except BaseException as exc:
            print("CHILD_OTHER", repr(f"{type(exc).__name__}: {exc}"), flush=True)
        os._exit(0)
    try:
        got += [int(gen()[0][0]) for _ in range(200)]
    except awkgen.AwkgenError as exc:
        print("PARENT_ERROR", repr(f"{type(exc).__name__}: {exc}"))
    _, status = os.waitpid(pid, 0)
    print("CHILD_STATUS", os.waitstatus_to_exitcode(status))
    print("PARENT_GOT", repr(got == list(range(205)) or got))
    gen.close()
    print("OK")
"""


@pytest.mark.parametrize("child_does", ["call", "exit"])
def test_fork_leaves_the_parents_stream_alone(tmp_path, child_does):
    child = run_child(tmp_path, FORK, params={"CHILD": child_does}, timeout=60)
    assert not child.lines("PARENT_ERROR"), child.log
    assert child.value("PARENT_GOT") is True, child.log
    assert "answered batch" not in child.err, child.log
    assert child.value("CHILD_STATUS") == 0, child.log
    if child_does == "call":
        _, mro, message = child.value("CHILD_ERROR")
        assert "AwkgenError" in mro and "fork" in message, child.log
        assert re.search(r"belongs to|another process", message), message


FORKED_CHILD_POOL = """
    def loader(ids):
        return np.full(10_000, ids[0], dtype=np.float64)  # shared memory

    def own_pool(tag):
        # a pool of the caller's own, in whatever process this runs: three batches, in order
        with awkgen.DataGeneratorMultiProc(loader, list(range(100)), batch_size=1, n_workers=2,
                                           shuffle=False) as gen:
            return [int(gen()[0][0]) for _ in range(3)]

    parent = awkgen.DataGeneratorMultiProc(loader, list(range(10_000)), batch_size=1, n_workers=2, shuffle=False)
    got = [int(parent()[0][0]) for _ in range(3)]
    if PARENT == "closed":  # the parent used awkgen (its forkserver runs) and has no live pool
        parent.close()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)  # a child that hangs dies
        start = time.monotonic()
        try:
            print("CHILD_GOT", own_pool("child"), flush=True)
            if CLOSE == "never":  # a second pool, left open: the child exits without a word
                gen = awkgen.DataGeneratorMultiProc(loader, list(range(100)), batch_size=1, n_workers=1)
                print("CHILD_UNCLOSED", int(gen()[0][0]) >= 0, flush=True)
        except BaseException as exc:
            print("CHILD_ERROR", repr(f"{type(exc).__name__}: {exc}"), flush=True)
        print("CHILD_SECONDS", time.monotonic() - start, flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("CHILD_STATUS", os.waitstatus_to_exitcode(status))
    if PARENT == "live":
        got += [int(parent()[0][0]) for _ in range(50)]  # the parent's pool is untouched
        parent.close()
        print("PARENT_GOT", repr(got == list(range(53)) or got))
    print("AGAIN", own_pool("parent"))  # and the parent still starts pools
    print("OK")
"""


@pytest.mark.parametrize("parent, close", [("live", "with"), ("closed", "with"), ("live", "never")])
def test_a_forked_child_gets_process_pools_of_its_own(tmp_path, parent, close):
    # The child inherited multiprocess's forkserver singleton (the parent's child, not its own):
    # every start in the child raised WorkerStartError (ChildProcessError: No child processes).
    child = run_child(tmp_path, FORKED_CHILD_POOL, params={"PARENT": parent, "CLOSE": close}, timeout=90)
    assert not child.lines("CHILD_ERROR"), child.log
    assert child.value("CHILD_GOT") == [0, 1, 2], child.log
    assert child.value("CHILD_STATUS") == 0, child.log
    assert child.value("AGAIN") == [0, 1, 2], child.log
    if parent == "live":
        assert child.value("PARENT_GOT") is True, child.log
    if close == "never":  # its workers saw it go and removed its segments (run_child checks the directory)
        assert child.value("CHILD_UNCLOSED") is True, child.log


def test_a_child_forked_while_a_parent_thread_holds_multiprocess_locks_still_starts_pools(tmp_path):
    # A manager thread starting a worker holds the forkserver's lock (for the whole first start
    # of the server) and the resource tracker's: a fork in that window left them held in the
    # child by a thread that does not exist there, and the child's first pool waited forever.
    child = run_child(tmp_path, """
        import awkgen.executors.process  # noqa: F401 - as the parent's own pool starting its workers has
        from multiprocess import forkserver, resource_tracker

        def loader(ids):
            return np.full(10_000, ids[0], dtype=np.float64)

        held, release = threading.Event(), threading.Event()

        def hold():
            with forkserver._forkserver._lock, resource_tracker._resource_tracker._lock:
                held.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a child that hangs dies (and the test sees no CHILD_GOT)
            with awkgen.DataGeneratorMultiProc(loader, list(range(10)), batch_size=1, n_workers=1,
                                               shuffle=False) as gen:
                print("CHILD_GOT", [int(gen()[0][0]) for _ in range(2)], flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("CHILD_STATUS", os.waitstatus_to_exitcode(status))
        release.set()
        holder.join()
        print("OK")
    """, timeout=60)
    assert child.value("CHILD_GOT") == [0, 1], child.log
    assert child.value("CHILD_STATUS") == 0, child.log


def test_torch_dataloader_fork_workers_build_generators_of_their_own(tmp_path):
    pytest.importorskip("torch")
    child = run_child(tmp_path, """
        import torch
        from torch.utils.data import DataLoader, Dataset

        def loader(ids):
            return np.full((len(ids), 10_000), ids[0], dtype=np.float64)

        class Items(Dataset):
            gen = None  # built on first use, so in each DataLoader worker (users do this)

            def __len__(self):
                return 8

            def __getitem__(self, i):
                if self.gen is None:
                    self.gen = awkgen.DataGeneratorMultiProc(loader, list(range(100)), batch_size=1,
                                                             n_workers=1, shuffle=False)
                return torch.as_tensor(self.gen()[0][0, :2]), os.getpid()

        trainer = awkgen.DataGeneratorMultiProc(loader, list(range(1000)), batch_size=1, n_workers=1, shuffle=False)
        first = int(trainer()[0][0, 0])  # the training process used awkgen first
        rows, pids = [], set()
        for x, pid in DataLoader(Items(), batch_size=2, num_workers=2, multiprocessing_context="fork"):
            rows += x[:, 0].tolist()
            pids.update(pid.tolist())
        print("ROWS", rows)
        print("WORKERS", len(pids - {os.getpid()}))
        print("TRAINER", [first] + [int(trainer()[0][0, 0]) for _ in range(3)])
        trainer.close()
        print("OK")
    """, timeout=120)
    # Each DataLoader worker has its own generator, so each one's items are its batches 0, 1, 2, 3.
    assert sorted(child.value("ROWS")) == [0, 0, 1, 1, 2, 2, 3, 3], child.log
    assert child.value("WORKERS") == 2, child.log
    assert child.value("TRAINER") == [0, 1, 2, 3], child.log


@pytest.mark.parametrize("library", ["multiprocessing", "multiprocess"])
def test_fork_pool_workers_build_generators_of_their_own(tmp_path, library):
    child = run_child(tmp_path, """
        import importlib

        def loader(ids):
            return np.full(10_000, ids[0], dtype=np.float64)

        def batches(start):
            with awkgen.DataGeneratorMultiProc(loader, list(range(start, start + 10)), batch_size=1, n_workers=1,
                                               shuffle=False) as gen:
                return [int(gen()[0][0]) for _ in range(2)], os.getpid()

        trainer = awkgen.DataGeneratorMultiProc(loader, list(range(1000)), batch_size=1, n_workers=1, shuffle=False)
        trainer()
        with importlib.import_module(LIBRARY).get_context("fork").Pool(2) as pool:
            results = pool.map(batches, [0, 10, 20, 30], chunksize=1)
        print("GOT", [got for got, _ in results])
        print("IN_CHILDREN", all(pid != os.getpid() for _, pid in results))
        trainer.close()
        print("OK")
    """, params={"LIBRARY": library}, timeout=120)
    assert child.value("GOT") == [[0, 1], [10, 11], [20, 21], [30, 31]], child.log
    assert child.value("IN_CHILDREN") is True, child.log


# -- 7. a stray message on a worker's socket -----------------------------------------------------

@pytest.mark.parametrize("replies", ["streaming", "piled_up"])
def test_garbage_on_a_workers_socket_fails_that_batch_as_malformed(tmp_path, replies):
    # "piled_up": one worker, and a caller that pauses, so the reply before the garbage, the
    # garbage and the reply after it are all waiting in the socket when the caller reads.
    child = run_child(tmp_path, """
        import stat

        def loader(ids):
            if 3 in ids:  # 12 bytes: a frame header announcing a message of petabytes
                for fd in range(3, 50):
                    try:
                        if stat.S_ISSOCK(os.fstat(fd).st_mode):
                            os.write(fd, b"\\x01" * 12)
                    except OSError:
                        pass
            return np.asarray(ids)

        workers = 1 if REPLIES == "piled_up" else 2
        gen = awkgen.DataGeneratorMultiProc(loader, list(range(20)), batch_size=1, n_workers=workers, prefetch=4,
                                            shuffle=False)
        events = []
        for i in range(12):
            if i == 2 and REPLIES == "piled_up":
                time.sleep(0.5)
            try:
                events.append(int(gen()[0][0]))
            except awkgen.AwkgenError as exc:
                events.append(f"{type(exc).__name__}: {exc}")
        print("EVENTS", repr(events))
        gen.close()
        print("OK")
    """, params={"REPLIES": replies}, timeout=45)
    events = child.value("EVENTS")
    assert events[:3] == [0, 1, 2] and events[4:] == list(range(4, 12)), child.log  # only batch 3 fails
    assert events[3].startswith("WorkerDiedError") and "malformed" in events[3], events[3]
    assert "MemoryError" not in child.err, child.log


# -- 8. sys.exit() and KeyboardInterrupt inside a loader ------------------------------------------

BACKENDS = ["serial", "thread", "process"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sys_exit_in_a_loader_is_a_loader_error_on_every_backend(tmp_path, backend):
    child = run_child(tmp_path, """
        def loader(ids):
            if 3 in ids:
                sys.exit(3)
            return np.asarray(ids)

        gen = make(BACKEND, loader, list(range(8)), batch_size=2, n_workers=2, shuffle=False)
        print("FIRST", gen()[0].tolist())
        try:
            gen()
            print("NO_ERROR")
        except awkgen.LoaderError as exc:
            print("CAUSE", repr((type(exc.__cause__).__name__, str(exc.__cause__))))
        print("NEXT", [gen()[0].tolist() for _ in range(3)])
        gen.close()
        print("OK")
    """, params={"BACKEND": backend}, timeout=45)
    assert child.value("FIRST") == [0, 1], child.log
    assert child.value("CAUSE") == ("SystemExit", "3"), child.log
    assert child.value("NEXT") == [[4, 5], [6, 7], [0, 1]], child.log


@pytest.mark.parametrize("backend", BACKENDS)
def test_keyboard_interrupt_in_a_loader_interrupts_and_the_batch_comes_next(tmp_path, backend):
    child = run_child(tmp_path, """
        def loader(ids):
            if 3 in ids:
                try:
                    os.close(os.open(FLAG, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:  # only the first call with this batch is interrupted
                    pass
                else:
                    raise KeyboardInterrupt
            return np.asarray(ids)

        gen = make(BACKEND, loader, list(range(8)), batch_size=2, n_workers=2, shuffle=False)
        print("FIRST", gen()[0].tolist())
        try:
            print("NOT_INTERRUPTED", gen()[0].tolist())
        except KeyboardInterrupt:
            print("INTERRUPTED")
        except awkgen.AwkgenError as exc:
            print("ERROR", repr(f"{type(exc).__name__}: {exc}"))
        print("NEXT", [gen()[0].tolist() for _ in range(3)])
        gen.close()
        print("OK")
    """, params={"BACKEND": backend, "FLAG": str(tmp_path / "interrupted")}, timeout=45)
    assert child.value("FIRST") == [0, 1], child.log
    assert "INTERRUPTED" in child.out.splitlines(), child.log
    assert child.value("NEXT") == [[2, 3], [4, 5], [6, 7]], child.log


# -- 9. stats() while the caller waits --------------------------------------------------------------

@pytest.mark.parametrize("backend", ["thread", "process"])
def test_stats_from_another_thread_answers_while_the_caller_waits(tmp_path, backend):
    child = run_child(tmp_path, """
        def loader(ids):
            if ids[0] == 0:
                time.sleep(4)
            return np.asarray(ids)

        gen = make(BACKEND, loader, list(range(10)), batch_size=1, n_workers=1, shuffle=False)
        seconds = []

        def monitor():
            time.sleep(0.5)
            for _ in range(3):
                start = time.monotonic()
                gen.stats()
                seconds.append(round(time.monotonic() - start, 3))
                time.sleep(0.2)

        thread = threading.Thread(target=monitor)
        thread.start()
        print("BATCH", gen()[0].tolist())
        thread.join()
        print("STATS_SECONDS", seconds)
        gen.close()
        print("OK")
    """, params={"BACKEND": backend}, timeout=45)
    assert child.value("BATCH") == [0], child.log
    assert max(child.value("STATS_SECONDS")) < 0.5, child.log


# -- 10. close() from a signal handler ---------------------------------------------------------------

def test_close_from_a_sigterm_handler_stops_a_waiting_call_cleanly(tmp_path):
    child = run_child(tmp_path, """
        from tests.leaks import pid_alive, wait_until

        def loader(ids):
            with open(os.path.join(PIDS, str(os.getpid())), "w"):
                pass
            time.sleep(10)
            return np.asarray(ids)

        def terminate_once_loading():
            wait_until(lambda: len(os.listdir(PIDS)) == 2, 20.0)
            time.sleep(0.3)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGTERM)

        os.mkdir(PIDS)
        sent = []
        gen = awkgen.DataGeneratorMultiProc(loader, list(range(10)), batch_size=1, n_workers=2)
        signal.signal(signal.SIGTERM, lambda *a: gen.close())
        threading.Thread(target=terminate_once_loading).start()
        try:
            gen()
            print("RETURNED")
        except awkgen.GeneratorStoppedError:
            print("STOPPED_AFTER", round(time.monotonic() - sent[0], 2))
        pids = [int(p) for p in os.listdir(PIDS)]
        print("WORKERS_GONE", wait_until(lambda: not any(pid_alive(p) for p in pids), 3.0) and len(pids) == 2)
        time.sleep(0.5)  # a manager thread failing after close() would print now
        print("OK")
    """, params={"PIDS": str(tmp_path / "pids")}, timeout=45)
    assert float(child.value("STOPPED_AFTER")) < 5, child.log
    assert child.value("WORKERS_GONE") is True, child.log
    assert "Exception in thread" not in child.err and "Bad file descriptor" not in child.err, child.log
    assert "Traceback" not in child.err, child.log


def test_close_from_a_sigterm_handler_mid_stream_is_prompt_and_quiet(tmp_path):
    # With a quick loader the signal often lands while the caller holds the pool's state lock:
    # close() must neither wait for the manager thread (which needs that lock) nor close the
    # descriptors under it.
    child = run_child(tmp_path, """
        import random

        rnd = random.Random(0)
        for _ in range(6):
            gen = awkgen.DataGeneratorMultiProc(np.asarray, list(range(1000)), batch_size=1, n_workers=2)
            signal.signal(signal.SIGTERM, lambda *a: gen.close())
            sent = []

            def terminate(delay):
                time.sleep(delay)
                sent.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGTERM)

            threading.Thread(target=terminate, args=(rnd.uniform(0.2, 0.6),)).start()
            try:
                while True:
                    gen()
            except awkgen.GeneratorStoppedError:
                print("STOPPED_AFTER", round(time.monotonic() - sent[0], 2))
        time.sleep(0.5)  # a manager thread failing after close() would print now
        print("OK")
    """, timeout=60)
    assert max(float(s) for s in child.lines("STOPPED_AFTER")) < 1.5, child.log
    assert len(child.lines("STOPPED_AFTER")) == 6, child.log
    assert "Exception in thread" not in child.err and "Traceback" not in child.err, child.log


# -- 11. more workers than file descriptors -----------------------------------------------------------

def test_more_workers_than_the_fd_limit_allows_fail_clearly_or_all_start(tmp_path):
    # 40 workers need more than 64 descriptors. Either they all start (the pool raised the soft
    # limit, say) or a call fails saying why; never a pool that goes on with fewer workers.
    child = run_child(tmp_path, """
        import multiprocess
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        start = time.monotonic()
        got = []
        try:
            gen = awkgen.DataGeneratorMultiProc(np.asarray, list(range(200)), batch_size=1, n_workers=40,
                                                shuffle=False)
            while time.monotonic() < start + 20:
                got.append(int(gen()[0][0]))
                if len(got) >= 100 and len(multiprocess.active_children()) >= 40:
                    break
            print("WORKERS", len(multiprocess.active_children()))
            gen.close()
        except awkgen.AwkgenError as exc:
            print("ERROR", repr(f"{type(exc).__name__}: {exc}"))
        print("IN_ORDER", got == [i % 200 for i in range(len(got))])
        print("SECONDS", time.monotonic() - start)
        print("OK")
    """, timeout=60)
    assert child.value("IN_ORDER") is True, child.log
    if child.lines("ERROR"):
        message = child.value("ERROR")
        assert re.search(r"EMFILE|[Tt]oo many open files|file descriptor|RLIMIT_NOFILE|ulimit", message), message
        assert "manager thread stopped" not in message, message
        assert float(child.value("SECONDS")) < 20, child.log
    else:
        assert child.value("WORKERS") == 40, child.log  # never fewer workers than asked, silently


# -- 12. the forkserver's socket file removed ---------------------------------------------------------

def test_a_deleted_forkserver_socket_never_stops_the_manager(tmp_path):
    child = run_child(tmp_path, """
        from multiprocess import forkserver

        with awkgen.DataGeneratorMultiProc(np.asarray, list(range(10)), batch_size=1, n_workers=1) as gen:
            gen()
        address = forkserver._forkserver._forkserver_address
        print("ADDRESS", repr(address))
        os.unlink(address)  # as a tmp cleaner would
        start = time.monotonic()
        try:
            with awkgen.DataGeneratorMultiProc(np.asarray, list(range(10)), batch_size=1, n_workers=2,
                                                shuffle=False) as gen:
                print("BATCHES", [gen()[0].tolist() for _ in range(3)])
        except awkgen.AwkgenError as exc:
            print("ERROR", repr(f"{type(exc).__name__}: {exc}"))
        print("SECONDS", time.monotonic() - start)
        print("OK")
    """, timeout=45)
    assert "manager thread stopped" not in child.out + child.err, child.log
    if child.lines("ERROR"):
        message = child.value("ERROR")
        assert re.search(r"fork ?server", message, re.IGNORECASE), message
        assert float(child.value("SECONDS")) < 10, child.log
    else:
        assert child.value("BATCHES") == [[0], [1], [2]], child.log


# -- 13. a task the manager hands out while the caller waits ------------------------------------------

def test_a_task_the_manager_hands_out_reaches_a_caller_already_waiting(tmp_path):
    # While workers start, the manager gives each its first task as it says Ready. A caller
    # already waiting in get() watches only the workers that had tasks when its wait began:
    # unless the manager wakes it, the batch waits out the caller's poll (0.1 s; an hour here)
    # and, meanwhile, every worker that finished its first task idles.
    child = run_child(tmp_path, """
        import awkgen.executors.process
        import awkgen.generator
        awkgen.generator._POLL_S = awkgen.executors.process._MANAGER_TICK_S = 3600.0  # how long a wait lasts

        for n_workers in (1, 4):  # the first pool also waits for the forkserver's start
            with awkgen.DataGeneratorMultiProc(np.asarray, list(range(16)), batch_size=2, n_workers=n_workers,
                                                shuffle=False) as gen:
                print("BATCHES", [gen()[0].tolist() for _ in range(8)])
        print("OK")
    """, timeout=45)
    assert child.lines("BATCHES") == [str([[2 * i, 2 * i + 1] for i in range(8)])] * 2, child.log
