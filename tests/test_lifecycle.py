"""Nothing left behind (SPEC section 5): stop, garbage collection, interpreter exit,
a SIGKILLed parent, Ctrl-C, and a parent that already runs TensorFlow.

The autouse ``no_leaks`` fixture checks this process; tests that need a parent to
die or exit run it as a child interpreter and check its workers from outside.
"""

from __future__ import annotations

import _thread
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import pytest

from awkgen import DataGeneratorMultiProc, GeneratorStoppedError
from tests.conftest import big_array, identity
from tests.leaks import awkgen_segments, descendants, pid_alive, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_fifty_generators_created_and_stopped_leave_nothing(backend):
    for i in range(50):
        gen = DataGeneratorMultiProc(big_array, list(range(20)), batch_size=10, n_workers=2, backend=backend)
        gen()
        if i % 3 == 0:
            gen.close()
        elif i % 3 == 1:
            gen(stop=True)
        else:
            gen.__exit__(None, None, None)
        with pytest.raises(GeneratorStoppedError):
            gen()


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_dropped_generator_is_collected_and_cleans_up(backend):
    gen = DataGeneratorMultiProc(big_array, list(range(20)), batch_size=10, n_workers=2, backend=backend)
    batch = gen()[0]
    del gen
    gc.collect()
    assert batch.shape == (10, 10_000)  # arrays handed out stay valid after the segment is gone


def test_arrays_kept_after_stop_stay_valid():
    with DataGeneratorMultiProc(big_array, list(range(40)), batch_size=10, n_workers=2, shuffle=False) as gen:
        kept = [gen()[0] for _ in range(4)]
    for i, arr in enumerate(kept):
        np.testing.assert_array_equal(arr[:, 0], np.arange(10 * i, 10 * i + 10))
        arr += 1  # and writable


def slow_identity(ids):
    time.sleep(1.0)
    return ids


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_ctrl_c_while_waiting_interrupts_and_the_batch_still_comes(backend):
    with DataGeneratorMultiProc(slow_identity, list(range(6)), batch_size=1, n_workers=1, backend=backend,
                                shuffle=False) as gen:
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            gen()
        timer.join()
        assert gen()[0] == [0]  # nothing lost: the interrupted batch is the next one
        assert gen()[0] == [1]


def test_ctrl_c_is_deferred_in_a_child_forked_from_a_thread():
    """After ``os.fork()`` from a thread, the child's main thread is that thread: the generator's
    Ctrl-C guard must know it (it compares thread idents), or an interrupt could land mid-bookkeeping."""
    from awkgen._interrupts import deferred_sigint

    result = {}

    def fork_and_check():
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: defer, interrupt ourselves, see it recorded (not raised) until the block ends
            os.close(read_fd)
            status = b"?"
            try:
                guard = deferred_sigint().__enter__()
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # bytecodes pass: a handler would have run by now
                    pass
                status = b"recorded" if guard.pending else b"missed"
                guard.finish()
            except KeyboardInterrupt:
                status += b"+raised"
            os.write(write_fd, status)
            os._exit(0)
        os.close(write_fd)
        os.waitpid(pid, 0)
        with os.fdopen(read_fd, "rb") as f:
            result["child"] = f.read()

    thread = threading.Thread(target=fork_and_check)
    thread.start()
    thread.join(30)
    assert result.get("child") == b"recorded+raised"  # deferred inside, delivered on finish()


# -- child interpreters -----------------------------------------------------------------------

CHILD_PRELUDE = """
import os, sys, time
import numpy as np
sys.path.insert(0, {root!r})
import awkgen

def loader(ids):
    with open(os.path.join({pid_dir!r}, str(os.getpid())), "w"):
        pass
    time.sleep({sleep})
    return np.ones((len(ids), 50_000))
"""


def run_child(tmp_path, body: str, sleep: float = 0.0, **popen):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD_PRELUDE.format(root=ROOT, pid_dir=str(pid_dir), sleep=sleep)
                      + textwrap.dedent(body))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)
    return proc, pid_dir


def worker_pids(pid_dir, at_least: int, within_s: float = 20.0) -> list[int]:
    assert wait_until(lambda: len(os.listdir(pid_dir)) >= at_least, within_s), "workers never ran the loader"
    return [int(name) for name in os.listdir(pid_dir)]


def assert_exited_leaving_nothing(proc, pid_dir) -> tuple[str, str]:
    """Wait for the child to exit by itself; check its workers and segments are gone."""
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    pids = worker_pids(pid_dir, 2)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 5.0), f"workers outlived exit: {pids}"
    assert not awkgen_segments(proc.pid)
    return out, err


def test_interpreter_exit_with_a_live_generator_cleans_up(tmp_path):
    proc, pid_dir = run_child(tmp_path, """
        if __name__ == "__main__":
            gen = awkgen.DataGeneratorMultiProc(loader, list(range(100)), batch_size=10, n_workers=2)
            for _ in range(5):
                gen()
            print("done", flush=True)
            # no close: interpreter exit must clean up
    """, sleep=0.2)  # slow enough that both workers load (a quick loader's batches all went to one)
    out, _ = assert_exited_leaving_nothing(proc, pid_dir)
    assert "done" in out


def test_exit_without_close_is_quiet_whatever_registered_exit_hooks_first(tmp_path):
    # A weakref.finalize made before awkgen is imported puts the finalizers' exit hook
    # ahead of multiprocess's; awkgen must still stop its pool before multiprocess
    # terminates the workers behind its back.
    proc, pid_dir = run_child(tmp_path, """
        import weakref

        class Anything:
            pass

        keep = Anything()
        weakref.finalize(keep, lambda: None)
        gen = awkgen.DataGeneratorMultiProc(loader, list(range(100)), batch_size=10, n_workers=2)
        for _ in range(5):
            gen()
    """)
    _, err = assert_exited_leaving_nothing(proc, pid_dir)
    assert "Traceback" not in err and "Error" not in err, err


def test_sigkilled_parent_leaves_no_workers_and_no_shared_memory(tmp_path):
    proc, pid_dir = run_child(tmp_path, """
        if __name__ == "__main__":
            gen = awkgen.DataGeneratorMultiProc(loader, list(range(100)), batch_size=10, n_workers=2)
            for _ in range(3):
                gen()
            print("ready", flush=True)
            time.sleep(60)
    """, sleep=0.05)
    try:
        assert proc.stdout.readline().strip() == "ready"
        pids = worker_pids(pid_dir, 2)
        assert awkgen_segments(proc.pid), "the child should be using shared memory"
        proc.kill()  # SIGKILL: no finalizer, no atexit
        proc.wait(timeout=10)
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), 5.0), f"orphaned workers: {pids}"
        assert wait_until(lambda: not awkgen_segments(proc.pid), 5.0), awkgen_segments(proc.pid)
    finally:
        proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("death", ["SIGKILL", "SIGTERM", "os._exit"])
def test_a_parent_dying_while_its_workers_idle_leaves_no_shared_memory(tmp_path, death):
    """Idle workers see their socket close before the lifeline fires: whichever comes
    first cleans up. Three parents in a row, each with its prefetch window full."""
    for trial in range(3):
        trial_dir = tmp_path / str(trial)
        trial_dir.mkdir()
        proc, pid_dir = run_child(trial_dir, f"""
            if __name__ == "__main__":
                gen = awkgen.DataGeneratorMultiProc(loader, list(range(100)), batch_size=10, n_workers=2)
                for _ in range(3):
                    gen()
                time.sleep(0.5)  # the prefetch window fills; workers go idle
                print("ready", flush=True)
                if {death!r} == "os._exit":
                    os._exit(0)
                time.sleep(60)
        """)
        try:
            assert proc.stdout.readline().strip() == "ready"
            pids = worker_pids(pid_dir, 2)
            if death != "os._exit":
                proc.send_signal(getattr(signal, death))
            proc.wait(timeout=10)
            assert wait_until(lambda pids=pids: not any(pid_alive(p) for p in pids), 5.0), f"orphaned: {pids}"
            assert wait_until(lambda pid=proc.pid: not awkgen_segments(pid), 5.0), awkgen_segments(proc.pid)
        finally:
            proc.kill()
            proc.communicate(timeout=10)


def test_ctrl_c_in_a_terminal_stops_the_program_and_its_workers(tmp_path):
    proc, pid_dir = run_child(tmp_path, """
        if __name__ == "__main__":
            gen = awkgen.DataGeneratorMultiProc(loader, list(range(100)), batch_size=10, n_workers=2)
            gen()
            print("ready", flush=True)
            while True:
                gen()
    """, sleep=0.5, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        pids = worker_pids(pid_dir, 2)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        _, err = proc.communicate(timeout=30)
        assert "KeyboardInterrupt" in err
        assert err.count("Traceback") == 1, err  # workers ignore SIGINT: one traceback, the parent's
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), 5.0)
        assert not awkgen_segments(proc.pid)
    finally:
        proc.kill()
        proc.communicate()


FRAMEWORK_WARMUPS = {
    # Each leaves the framework's thread pools running in the parent before the pool starts.
    "tensorflow": """
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
            model.compile("sgd", "mse")
            model.fit(np.ones((64, 4)), np.ones((64, 2)), epochs=1, verbose=0)
    """,
    "torch": """
            import torch
            net = torch.nn.Linear(256, 256)
            net(torch.ones(512, 256)).sum().backward()
    """,
    "jax": """
            import jax, jax.numpy as jnp
            jax.jit(lambda a: (a @ a).sum())(jnp.ones((256, 256))).block_until_ready()
    """,
}


@pytest.mark.parametrize("framework", sorted(FRAMEWORK_WARMUPS))
def test_pool_is_safe_after_a_framework_ran_in_the_parent(tmp_path, framework):
    proc, _ = run_child(tmp_path, """
        if __name__ == "__main__":""" + FRAMEWORK_WARMUPS[framework] + """
            with awkgen.DataGeneratorMultiProc(loader, list(range(40)), batch_size=4, n_workers=2) as gen:
                shapes = {gen()[0].shape for _ in range(20)}
            print("ok", shapes, flush=True)
    """)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert "ok {(4, 50000)}" in out


def test_a_new_pool_reclaims_segments_a_dead_parent_left(tmp_path, monkeypatch):
    """A pool killed outright leaves its segments and its lock file, unlocked: the next
    pool to start takes the lock, which proves the owner is gone, and removes them."""
    monkeypatch.setenv("AWKGEN_SHM_DIR", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    key = f"awkgen-{int(dead.stdout)}-feedbeef"
    for name in (f"{key}-0", f"{key}-1", f"{key}.lock"):
        (tmp_path / name).write_bytes(b"\0" * 4096)
    with DataGeneratorMultiProc(identity, [1, 2], batch_size=1, n_workers=1) as gen:
        gen()
    assert os.listdir(tmp_path) == []


def test_a_pool_starts_whatever_else_lies_in_the_directory_and_removes_none_of_it(tmp_path, monkeypatch):
    """Names anyone on the host can plant in a sticky 1777 directory never stop a pool from
    starting, and nothing a pool cannot prove is a dead pool's is removed."""
    monkeypatch.setenv("AWKGEN_SHM_DIR", str(tmp_path))
    (tmp_path / "awkgen-99999999999999999999-x-0").write_bytes(b"")  # a pid past any integer
    (tmp_path / "awkgen-4000000-x-0").mkdir()  # a directory
    (tmp_path / "awkgen-4000000-x.lock").mkdir()
    (tmp_path / "awkgen-4000001-y-0").write_bytes(b"")  # a dead pid, but no lock to prove it a pool
    (tmp_path / "awkgen-4000002-z-0").write_bytes(b"")  # another user's pool, dead
    (tmp_path / "awkgen-4000002-z.lock").write_bytes(b"")
    os.chown(tmp_path / "awkgen-4000002-z.lock", 65534, 65534)
    (tmp_path / "awkgen-").write_bytes(b"")
    planted = sorted(os.listdir(tmp_path))
    with DataGeneratorMultiProc(big_array, list(range(20)), batch_size=10, n_workers=1) as gen:
        assert gen()[0].shape == (10, 10_000)
        assert gen()[0].shape == (10, 10_000)
    assert sorted(os.listdir(tmp_path)) == planted


def _reclaim_as(uid: int, directory: str) -> list[str]:
    """What reclaim_orphans removes when user *uid* runs it (a forked child that drops root)."""
    import json

    from awkgen import transport

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.write(write, json.dumps(transport.reclaim_orphans(directory)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and out, "the child failed"
    return sorted(json.loads(out))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files of several users")
@pytest.mark.parametrize("mode", [0o1777, 0o555])
def test_files_a_pool_cannot_remove_stop_nothing_else(mode):
    """A dead pool of user nobody in a shared directory, one of whose segments belongs to root.
    Sticky 1777 (as /dev/shm): nobody may unlink only its own files (EPERM for root's); read-only
    555: it may unlink nothing (EACCES). Root's segment is never removed (a planted name), nor
    anything that fails; everything else is, in this pool and the next, and nothing raises."""
    nobody = 65534
    directory = tempfile.mkdtemp(prefix="awkgen-test-reclaim-", dir="/tmp")  # /tmp: nobody may enter
    try:
        files = {"awkgen-4000003-aa-0": nobody, "awkgen-4000003-aa-1": 0, "awkgen-4000003-aa-2": nobody,
                 "awkgen-4000003-aa.lock": nobody, "awkgen-4000004-bb-0": nobody, "awkgen-4000004-bb.lock": nobody}
        for name, owner in files.items():
            path = os.path.join(directory, name)
            with open(path, "wb") as f:
                f.write(b"\0" * 4096)
            os.chown(path, owner, owner)
            os.chmod(path, 0o600)
        os.chmod(directory, mode)
        removed = _reclaim_as(nobody, directory)
        left = sorted(os.listdir(directory))
        if mode == 0o555:
            assert removed == [] and left == sorted(files)
        else:
            assert removed == sorted(name for name, owner in files.items() if owner == nobody)
            assert left == ["awkgen-4000003-aa-1"]
    finally:
        os.chmod(directory, 0o700)
        shutil.rmtree(directory)


UNSHARED_POOL = """
import sys, time
sys.path.insert(0, {root!r})
import awkgen
from tests.conftest import big_array
gen = awkgen.DataGeneratorMultiProc(big_array, list(range(40)), batch_size=10, n_workers=1, shuffle=False)
first = gen()[0]
print("ready", flush=True)
sys.stdin.readline()  # the host starts its own pool meanwhile
batches = [gen()[0] for _ in range(6)]
assert float(first[0, 0]) == 0.0 and [float(b[0, 0]) for b in batches] == [10, 20, 30, 0, 10, 20], batches
gen.close()
print("done", flush=True)
"""


def test_a_pool_in_another_pid_namespace_keeps_its_segments(tmp_path, monkeypatch):
    """Two containers share one segment directory: a pid number seen from the other PID
    namespace proves nothing; the lock held by the owner does."""
    monkeypatch.setenv("AWKGEN_SHM_DIR", str(tmp_path))
    # In a new PID namespace the pool's process gets pid 4000000, which no process has here.
    launch = 'echo 3999999 > /proc/sys/kernel/ns_last_pid; "$0" -c "$1"; exit $?'
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", launch, sys.executable,
                             UNSHARED_POOL.format(root=ROOT)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        theirs = {name for name in os.listdir(tmp_path) if name.startswith("awkgen-")}
        assert any(name.startswith("awkgen-4000000-") for name in theirs), theirs  # a dead pid, seen from here
        assert not pid_alive(4000000)
        with DataGeneratorMultiProc(big_array, list(range(20)), batch_size=10, n_workers=1) as gen:
            gen()
        assert theirs <= set(os.listdir(tmp_path))
        out, err = proc.communicate("go\n", timeout=60)
        assert proc.returncode == 0 and "done" in out, err
    finally:
        proc.kill()
        proc.communicate()
    assert os.listdir(tmp_path) == []


GRANDCHILD_POOL = """
import os, subprocess, sys, time
sys.path.insert(0, {root!r})
import awkgen
from multiprocess import forkserver, resource_tracker

def spawns_a_sleeper(ids):
    if ids[0] == 0:  # a long-lived helper process, inheriting whatever it is given
        proc = subprocess.Popen(["sleep", "60"], close_fds=False, stdout=subprocess.DEVNULL)
        print("sleeper", proc.pid, flush=True)
    return ids

if __name__ == "__main__":
    with awkgen.DataGeneratorMultiProc(spawns_a_sleeper, [0, 1, 2, 3], batch_size=1, n_workers=1,
                                       shuffle=False) as gen:
        [gen() for _ in range(4)]
    print("servers", forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid, flush=True)
"""


def test_processes_a_loader_starts_do_not_keep_the_forkserver_alive(tmp_path):
    log, err = tmp_path / "out", tmp_path / "err"  # files, not pipes: a surviving server would hold a pipe open
    with open(log, "w") as stdout, open(err, "w") as stderr:
        done = subprocess.run([sys.executable, "-c", GRANDCHILD_POOL.format(root=ROOT)], stdout=stdout,
                              stderr=stderr, timeout=60)
    assert done.returncode == 0, err.read_text()
    words = {line.split()[0]: line.split()[1:] for line in log.read_text().splitlines()}
    sleeper = int(words["sleeper"][0])
    servers = [int(pid) for pid in words["servers"]]
    try:
        assert pid_alive(sleeper)
        assert wait_until(lambda: not any(pid_alive(p) for p in servers), 5.0), \
            f"the forkserver or resource tracker {servers} outlived their program while its loader's helper lives"
    finally:
        os.kill(sleeper, signal.SIGKILL)


FORKED_HELPER = """
import os, sys, time
sys.path.insert(0, {root!r})
import awkgen
from tests.conftest import big_array

gen = awkgen.DataGeneratorMultiProc(big_array, list(range(40)), batch_size=10, n_workers=2)
gen()
helper = os.fork()
if helper == 0:  # a helper process that outlives its parent (a logger, a prefetcher of another library)
    time.sleep(30)
    os._exit(0)
print("ready", helper, flush=True)
time.sleep(60)
"""


def test_a_forked_helper_that_outlives_a_killed_parent_does_not_keep_its_workers(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", FORKED_HELPER.format(root=ROOT)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    helper = None
    try:
        _, helper_pid = proc.stdout.readline().split()
        helper = int(helper_pid)
        workers = sorted(descendants(proc.pid) - {helper})  # the forkserver, resource tracker and workers
        assert len(workers) >= 4, workers
        proc.kill()
        proc.wait(timeout=10)
        assert pid_alive(helper)
        assert wait_until(lambda: not any(pid_alive(p) for p in workers), 5.0), f"workers kept alive: {workers}"
        assert wait_until(lambda: not awkgen_segments(proc.pid), 5.0), awkgen_segments(proc.pid)
    finally:
        proc.kill()
        if helper is not None and pid_alive(helper):
            os.kill(helper, signal.SIGKILL)  # it holds the parent's stdout: communicate waits for it
        proc.communicate(timeout=10)


@pytest.mark.allow_leaks  # jupyter_client's zmq context in this process; the kernel's leaks are checked below
def test_a_jupyter_kernel_shut_down_by_its_client_leaves_nothing(tmp_path):
    """A notebook's kernel is stopped by its client (a restart, closing the notebook) with the
    pool still open: its workers exit and its shared memory is removed."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", cwd=ROOT)
    outputs: list = []
    try:
        reply = client.execute_interactive(textwrap.dedent("""
            import awkgen, os
            from tests.conftest import big_array
            gen = awkgen.DataGeneratorMultiProc(big_array, list(range(40)), batch_size=10, n_workers=2)
            [gen() for _ in range(3)]
            print(os.getpid())
        """), timeout=60, output_hook=lambda msg: outputs.append(msg))
        assert reply["content"]["status"] == "ok", reply["content"]
        kernel_pid = int(next(m["content"]["text"] for m in outputs if m["msg_type"] == "stream").split()[0])
        workers = sorted(descendants(kernel_pid))
        assert workers and awkgen_segments(kernel_pid)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    assert wait_until(lambda: not any(pid_alive(p) for p in workers), 10.0), f"workers outlived the kernel: {workers}"
    assert wait_until(lambda: not awkgen_segments(kernel_pid), 5.0), awkgen_segments(kernel_pid)



FORKSERVER_KILLED = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
import awkgen
from multiprocess import forkserver
from tests.conftest import big_array

with awkgen.DataGeneratorMultiProc(big_array, list(range(40)), batch_size=10, n_workers=2, shuffle=False) as gen:
    gen()
    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGTERM)  # as a kernel stopping its children does
    time.sleep(1.0)
    firsts = [float(gen()[0][0, 0]) for _ in range(8)]
assert firsts == [10.0, 20.0, 30.0, 0.0, 10.0, 20.0, 30.0, 0.0], firsts
print("OK", flush=True)
"""


def test_workers_go_on_when_their_forkserver_is_killed(tmp_path):
    """The forkserver reports its children's exits; killed, it makes every worker look dead.
    They are not: the pool keeps them and the stream goes on, nothing lost, nothing left."""
    log = tmp_path / "err"
    with open(log, "w") as stderr:
        done = subprocess.run([sys.executable, "-c", FORKSERVER_KILLED.format(root=ROOT)], stdout=subprocess.PIPE,
                              stderr=stderr, text=True, timeout=60)
    assert done.returncode == 0 and "OK" in done.stdout, log.read_text()[-3000:]
    assert "died" not in log.read_text()
