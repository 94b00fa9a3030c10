"""A multi-node Ray cluster on this machine, and what awkgen's ``"ray"`` backend does on it.

Run by ``tests/test_ray_nodes.py`` as ``python -m tests.raynodes``, in a child
interpreter of its own: a multi-node ``ray.cluster_utils.Cluster`` cannot share a
process with the session's one-node cluster (a process talks to one Ray cluster),
and the child's deadline turns a hang into a failure. This script only *observes*:
it runs each scenario, records what happened (batches, errors and their messages,
nodes, pids, times) and prints it as one JSON line; the tests assert on it.

The cluster: a head that holds a CPU like any node (placement must not depend on
it), and two more nodes, the second with a custom resource ``"spare"``. Each node
is a raylet with its own object store. The Ray temp folder is private (``RAY_TMPDIR``,
set by the caller), so no other process on this machine finds this cluster by
``ray.init()``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

import numpy as np

N_IDS = 48
BATCH = 2
SEED = 11


def where(ids):
    """The batch, the node and process that loaded it, and 128 KiB of padding: enough for a
    shared-memory slot where the actor runs on the driver's node."""
    import ray

    return np.asarray(ids), ray.get_runtime_context().get_node_id(), os.getpid(), np.zeros(16_384)


def _in_slot(array: np.ndarray) -> bool:
    """Whether *array* views one of the driver's shared-memory slots (the end of its base chain)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return type(array.base).__name__ == "_Lease"


def slow_where(ids):
    time.sleep(0.15)
    return where(ids)


def _expected(n_batches: int) -> list[list[int]]:
    """The batches of the process backend, same ids, batch size and seed (two epochs and more)."""
    from awkgen import DataGeneratorMultiProc

    with DataGeneratorMultiProc(lambda ids: np.asarray(ids), list(range(N_IDS)), batch_size=BATCH, seed=SEED,
                                n_workers=1, backend="process") as gen:
        return [gen()[0].tolist() for _ in range(n_batches)]


def _pull(gen: Any, n: int, log: list[dict[str, Any]]) -> None:
    """*n* calls of *gen*, each recorded as a batch (ids, node, pid) or an error (type, message, ids)."""
    from awkgen import AwkgenError

    for _ in range(n):
        started = time.monotonic()
        try:
            ids, node, pid, pad = gen()[0]
            log.append({"ids": ids.tolist(), "node": node, "pid": pid, "slot": _in_slot(pad),
                        "s": time.monotonic() - started})
        except AwkgenError as err:
            log.append({"error": type(err).__name__, "message": str(err), "ids": list(err.ids),
                        "s": time.monotonic() - started})


def spread_and_node_loss(cluster: Any, nodes: dict[str, Any], out: dict[str, Any]) -> None:
    """Three actors on a three-node cluster; the node without "spare" is lost mid-epoch."""
    from awkgen import DataGeneratorMultiProc

    ids = list(range(N_IDS))
    out["expected"] = _expected(3 * N_IDS // BATCH)
    log: list[dict[str, Any]] = out.setdefault("log", [])
    gen = DataGeneratorMultiProc(slow_where, ids, batch_size=BATCH, seed=SEED, n_workers=3, backend="ray")
    try:
        # Until every actor has loaded batches (calls go only to actors that are up, and one on a
        # node that just joined starts last): then each has one running and one queued.
        _pull(gen, 9, log)
        while len({r.get("pid") for r in log}) < 3 and len(log) < 21:
            _pull(gen, 1, log)
        out["pulled_before_loss"] = len(log)
        out["state_before_loss"] = gen.state_dict()
        time.sleep(0.05)  # into the next calls
        out["lost_node"] = nodes["plain"].node_id
        lost_at = len(log)
        cluster.remove_node(nodes["plain"])  # its raylet, its object store and the actor on it go at once
        out["lost_at"] = lost_at
        _pull(gen, N_IDS // BATCH - len(log) + 6, log)  # to the end of the epoch, and into the next
        out["state"] = gen.state_dict()  # resumed on one machine by the test
        _pull(gen, 4, log)
        out["after_state"] = [r.get("ids") for r in log[-4:]]
    finally:
        gen.close()


def no_node_left(cluster: Any, nodes: dict[str, Any], out: dict[str, Any]) -> None:
    """Actors that need "spare": on its one node; that node lost, no node can host one."""
    from awkgen import DataGeneratorMultiProc

    log: list[dict[str, Any]] = out.setdefault("log", [])
    gen = DataGeneratorMultiProc(slow_where, list(range(N_IDS)), batch_size=BATCH, seed=SEED, n_workers=2,
                                 backend="ray", actor_options={"resources": {"spare": 1}, "num_cpus": 0.5})
    try:
        _pull(gen, 4, log)
        out["spare_node"] = nodes["spare"].node_id
        cluster.remove_node(nodes["spare"])
        out["lost_at"] = len(log)
        _pull(gen, 6, log)
        # A node that can host one joins: actors start there again.
        joined = cluster.add_node(num_cpus=1, resources={"spare": 2})
        out["joined_node"] = joined.node_id
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (log and "node" in log[-1]):
            _pull(gen, 1, log)
            time.sleep(0.01 if "error" in log[-1] else 0)  # a short report: no thousands of failed calls
    finally:
        gen.close()


def lost_result(cluster: Any, nodes: dict[str, Any], out: dict[str, Any]) -> None:
    """A call finishes on a node, which is lost before the driver fetches its result (the only
    copy was in that node's object store): the batch runs again on another node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from awkgen.executors.base import Task
    from awkgen.executors.ray import RayExecutor

    extra = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    out["lost_node"] = extra.node_id
    # soft: once the node is gone, the replacement goes anywhere
    strategy = NodeAffinitySchedulingStrategy(extra.node_id, soft=True)
    executor = RayExecutor(where, n_workers=1, prefetch=2, timeout=None,
                           actor_options={"scheduling_strategy": strategy})
    log: list[dict[str, Any]] = out.setdefault("log", [])

    def record(outcome: Any, started: float) -> None:
        if outcome is None or outcome.error_type is not None:
            log.append({"error": getattr(outcome, "error_type", None).__name__ if outcome else "none",
                        "message": getattr(outcome, "detail", ""), "ids": [], "s": time.monotonic() - started})
            return
        ids, node, pid, _ = outcome.value
        log.append({"ids": ids.tolist(), "node": node, "pid": pid, "s": time.monotonic() - started})

    try:
        started = time.monotonic()
        executor.submit(Task(0, np.arange(0, 2)))
        record(executor.get(60), started)
        with executor._lock:  # neither of its threads fetches the next result meanwhile
            executor.submit(Task(1, np.arange(2, 4)))
            ref = executor._workers[0].calls[-1].ref
            out["finished_before_loss"] = bool(ray.wait([ref], timeout=30, fetch_local=False)[0])
            cluster.remove_node(extra)
        started = time.monotonic()
        record(executor.get(60), started)
        started = time.monotonic()
        executor.submit(Task(2, np.arange(4, 6)))
        record(executor.get(60), started)
    finally:
        executor.close()


def _watchdog(deadline_s: float, out: dict[str, Any]) -> None:
    """Past *deadline_s*: print what was observed and every thread's stack, kill the cluster's
    processes (this process's descendants) and exit, so the caller gets a report, not a hang."""
    import faulthandler
    import signal
    import threading

    from awkgen import procfs

    def fire() -> None:
        out["deadline_passed_s"] = deadline_s
        faulthandler.dump_traceback(all_threads=True)
        print(json.dumps(out, default=str), flush=True)
        for pid in procfs.descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(3)

    timer = threading.Timer(deadline_s, fire)
    timer.daemon = True
    timer.start()


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray.cluster_utils import Cluster

    out: dict[str, Any] = {}
    _watchdog(float(os.environ.get("AWKGEN_RAYNODES_DEADLINE_S", "100")), out)
    began = time.monotonic()
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        nodes = {"head": cluster.head_node,
                 "plain": cluster.add_node(num_cpus=1),
                 "spare": cluster.add_node(num_cpus=1, resources={"spare": 2})}
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        out["nodes"] = {name: node.node_id for name, node in nodes.items()}
        out["driver_node"] = ray.get_runtime_context().get_node_id()
        out["cluster_s"] = time.monotonic() - began
        pids: set[int] = set()
        for name, scenario in (("node_loss", spread_and_node_loss), ("no_node_left", no_node_left),
                               ("lost_result", lost_result)):
            if len(sys.argv) > 1 and name not in sys.argv[1:]:
                continue
            out[name] = {}
            started = time.monotonic()
            try:
                scenario(cluster, nodes, out[name])
            except BaseException:
                out[name]["crashed"] = traceback.format_exc()
            out[name]["wall_s"] = time.monotonic() - started
            pids |= {r["pid"] for r in out[name].get("log", []) if "pid" in r}
        out["actor_pids"] = sorted(pids)
        deadline = time.monotonic() + 10
        from awkgen.procfs import pid_alive

        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        out["alive_after_close"] = [p for p in pids if pid_alive(p)]
        out["total_s"] = time.monotonic() - began
    finally:
        print(json.dumps(out), flush=True)
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
