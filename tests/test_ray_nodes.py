"""The ``"ray"`` backend on a multi-node cluster: actors spread, a node lost mid-epoch, no node left.

One ``ray.cluster_utils.Cluster`` (three raylets on this machine, each with its own
object store) serves the module. It runs in a child interpreter (``tests/raynodes.py``,
with a deadline): a process talks to one Ray cluster, and this session's tests share a
one-node cluster of their own. The child records what happened; the tests below judge it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from awkgen import DataGeneratorMultiProc
from tests.raynodes import BATCH, N_IDS, SEED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE_S = 100  # the child reports and kills its cluster past this (a healthy run takes 15 to 20 s)
ERROR_WITHIN_S = 5  # a failed batch is raised this soon after the call that waits for it begins
RERUN_WITHIN_S = 30  # a batch lost with its node arrives this soon: a new actor starts and loads it


@pytest.fixture(scope="module")
def run():
    """What ``python -m tests.raynodes`` observed (its JSON report)."""
    tmp = tempfile.mkdtemp(prefix="awkrn", dir="/tmp")  # Ray's sockets live here: keep the path short
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled", AWKGEN_RAYNODES_DEADLINE_S=str(DEADLINE_S))
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.raynodes"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=DEADLINE_S + 30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"the cluster run reported nothing (exit code {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert "deadline_passed_s" not in report, f"the cluster run hung:\n{proc.stderr[-6000:]}"
    for scenario in ("node_loss", "no_node_left", "lost_result"):
        assert "crashed" not in report.get(scenario, {}), report[scenario]["crashed"]
    return report


def _errors(log):
    return [r for r in log if "error" in r]


def test_actors_spread_over_every_node_whatever_the_head_holds(run):
    log = run["node_loss"]["log"]
    before = log[:run["node_loss"]["lost_at"]]
    # The head holds a CPU like the other two nodes: three actors, one on each.
    assert {r["node"] for r in before} == set(run["nodes"].values())
    assert len({r["pid"] for r in before}) == 3


def test_results_from_the_drivers_node_come_through_shared_memory_and_from_the_others_through_the_store(run):
    log = [r for r in run["node_loss"]["log"] if "node" in r]
    assert run["driver_node"] == run["nodes"]["head"]
    # another node's actors: through the object store, even where that node shares this machine's /dev/shm
    assert not any(r["slot"] for r in log if r["node"] != run["driver_node"])
    # the first calls went out before a result sized the slots; then every batch of the head's actor
    assert sum(r["slot"] for r in log if r["node"] == run["driver_node"]) >= 3


def test_a_lost_node_fails_only_the_batches_running_on_it_and_names_it(run):
    scenario = run["node_loss"]
    log, lost, lost_at = scenario["log"], scenario["lost_node"], scenario["lost_at"]
    failed = _errors(log)
    # The node ran one actor, with one call running and one queued: the running one fails,
    # the queued one runs elsewhere.
    assert len(failed) == 1, failed
    assert failed[0]["error"] == "WorkerDiedError"
    assert f"died with its node {lost[:12]}" in failed[0]["message"]
    assert failed[0]["s"] < ERROR_WITHIN_S
    assert all(r["s"] < ERROR_WITHIN_S for r in log[lost_at:])  # nothing waits on the lost node
    # Batches it finished before it went may still arrive; none after the failure.
    after = [r for r in log[log.index(failed[0]) + 1:] if "error" not in r]
    assert lost not in {r["node"] for r in after}
    # Its replacement started on a surviving node and loaded batches.
    replacements = {r["pid"] for r in after} - {r["pid"] for r in log[:lost_at]}
    assert len(replacements) == 1
    assert {r["node"] for r in after if r["pid"] in replacements} <= set(run["nodes"].values()) - {lost}


def test_the_batches_are_the_process_backends_whatever_nodes_come_and_go(run):
    log, expected = run["node_loss"]["log"], run["node_loss"]["expected"]
    assert len(log) > N_IDS // BATCH  # into the second epoch
    for step, (record, batch) in enumerate(zip(log, expected)):
        assert record["ids"] == batch, f"step {step}: {record}"  # a failed batch names its ids too


def test_state_dict_from_the_cluster_resumes_on_one_machine_exactly(run):
    scenario = run["node_loss"]
    with DataGeneratorMultiProc(np.asarray, list(range(N_IDS)), batch_size=BATCH, seed=SEED, n_workers=1,
                                backend="process") as gen:
        gen.load_state_dict(scenario["state"])
        assert [gen()[0].tolist() for _ in range(4)] == scenario["after_state"]
        gen.load_state_dict(scenario["state_before_loss"])  # taken before the node was lost
        pulled = scenario["pulled_before_loss"]
        assert [gen()[0].tolist() for _ in range(3)] == scenario["expected"][pulled:pulled + 3]


def test_when_no_node_can_host_an_actor_calls_fail_within_seconds_and_recover_when_one_joins(run):
    scenario = run["no_node_left"]
    log, lost_at = scenario["log"], scenario["lost_at"]
    assert {r["node"] for r in log[:lost_at]} == {scenario["spare_node"]}  # actor_options placed them there
    after = log[lost_at:]
    died = [r for r in after if r.get("error") == "WorkerDiedError"]
    # the calls running on its two actors (one still starting when the node went is replaced
    # before a call goes to it; a result finished there and not yet fetched runs again)
    assert 1 <= len(died) <= 2, died
    assert all(f"died with its node {scenario['spare_node'][:12]}" in r["message"] for r in died)
    no_host = [r for r in after if r.get("error") == "WorkerStartError"]
    assert no_host, after
    assert all("no alive node of the Ray cluster can host a Ray actor (each needs CPU=0.5, spare=1" in r["message"]
               for r in no_host)
    assert all(r["s"] < ERROR_WITHIN_S for r in after if "error" in r)
    assert "node" in after[-1] and after[-1]["node"] == scenario["joined_node"]  # back once a node could host one


def test_stop_leaves_no_actor_alive_on_any_node(run):
    assert len(run["actor_pids"]) >= 5  # three, a replacement, two on "spare" and one on the node that joined
    assert run["alive_after_close"] == []


def test_a_batch_finished_on_a_node_lost_before_its_result_was_fetched_runs_again_elsewhere(run):
    scenario = run["lost_result"]
    log, lost = scenario["log"], scenario["lost_node"]
    assert scenario["finished_before_loss"]  # its result was in the lost node's object store only
    assert _errors(log) == []
    assert [r["ids"] for r in log] == [[0, 1], [2, 3], [4, 5]]  # as the loader makes them
    assert log[0]["node"] == lost
    assert log[1]["node"] != lost and log[1]["pid"] != log[0]["pid"]  # ran again, on the replacement
    assert log[2]["pid"] == log[1]["pid"]  # which goes on
    assert log[1]["s"] < RERUN_WITHIN_S  # an actor started and the batch loaded again: no wait on the lost node
