"""awkgen.procfs against real processes: children, zombies, a pruned walk, a name that looks like fields."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from awkgen import procfs
from tests.leaks import wait_until


def _state(pid: int) -> str | None:
    info = procfs.stat(pid)
    return None if info is None else info[1]


def test_a_child_is_alive_and_a_descendant_until_it_dies_and_a_zombie_is_dead():
    child = subprocess.Popen(["sleep", "30"])
    try:
        parent, state = procfs.stat(child.pid)  # just started: S, R, or D while exec loads the program
        assert parent == os.getpid() and state not in ("Z", "X"), state
        assert procfs.pid_alive(child.pid) and child.pid in procfs.descendants(os.getpid())
        assert procfs.process_table()[child.pid][0] == os.getpid()
        child.kill()  # not reaped yet: a zombie
        assert wait_until(lambda: _state(child.pid) == "Z", 5.0)
        assert not procfs.pid_alive(child.pid)
        assert child.pid not in procfs.descendants(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert procfs.stat(child.pid) is None and not procfs.pid_alive(child.pid)


def test_prune_lists_a_process_but_not_what_runs_below_it():
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        assert wait_until(lambda: len(procfs.descendants(shell.pid)) == 1, 5.0)
        (grandchild,) = procfs.descendants(shell.pid)
        assert {shell.pid, grandchild} <= procfs.descendants(os.getpid())
        pruned = procfs.descendants(os.getpid(), prune=lambda pid: pid == shell.pid)
        assert shell.pid in pruned and grandchild not in pruned
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def test_a_program_name_with_parentheses_and_spaces_is_read_after_its_last_parenthesis():
    code = "open('/proc/self/comm', 'w').write(') Z 1 ('); import time; time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        def renamed() -> bool:
            try:
                with open(f"/proc/{child.pid}/comm") as f:
                    return f.read().strip() == ") Z 1 ("
            except OSError:
                return False

        assert wait_until(renamed, 10.0)
        assert procfs.stat(child.pid)[0] == os.getpid() and _state(child.pid) != "Z"
        assert procfs.pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
