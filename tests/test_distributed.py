"""Data-parallel sharding end to end, and ``shard_from_env``.

The end-to-end test launches two real ranks as torchrun would (its environment
variables, gloo, on this machine; torchrun itself would add seconds of startup):
each feeds its shard to a tiny DistributedDataParallel model; ``tests/ddp_rank.py``
all-gathers the ids every rank saw.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from awkgen import shard_from_env
from tests.ddp_rank import EPOCHS, N_IDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                      "SLURM_NTASKS", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_ranks(out_path, seed):
    """Launch two ranks with the variables torchrun would set (without torchrun's own startup)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2", OMP_NUM_THREADS="1",
               PYTHONPATH=ROOT)
    ranks = [subprocess.Popen([sys.executable, os.path.join("tests", "ddp_rank.py"), str(out_path), str(seed)],
                              cwd=ROOT, env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    try:
        outputs = [rank.communicate(timeout=150)[0] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
            rank.wait()
    assert [rank.returncode for rank in ranks] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    with open(out_path) as f:
        return json.load(f)


def test_two_ddp_ranks_see_every_id_once_per_epoch_in_equal_steps_and_the_same_order_on_a_rerun(tmp_path):
    report = run_two_ranks(tmp_path / "ranks.json", seed=11)
    assert report["world_size"] == 2
    first, rerun = report["runs"]
    for epoch in range(EPOCHS):
        rank0, rank1 = first["seen"][epoch]
        assert len(rank0) == len(rank1) == N_IDS // 2
        assert not set(rank0) & set(rank1), f"epoch {epoch}: the shards overlap"
        assert sorted(rank0 + rank1) == list(range(N_IDS)), f"epoch {epoch}: an id was missed or repeated"
        assert first["steps"][epoch] == [5, 5]  # ceil(48 / 10) optimizer steps on each rank
    assert first["seen"][0][0] != first["seen"][1][0], "each epoch should be shuffled anew"
    assert rerun["seen"] == first["seen"]  # the same seed gives the same order on every rank...
    assert rerun["weights"] == first["weights"]  # ...and so the same trained model


# -- shard_from_env reads the launchers' variables -------------------------------------------------------



@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variables, expected", [
    ({}, (0, 1)),
    ({"RANK": "3", "WORLD_SIZE": "4"}, (3, 4)),
    ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, (1, 2)),
    ({"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8"}, (5, 8)),
    # torchrun inside a Slurm task: torchrun's global rank wins over the task's index
    ({"RANK": "6", "WORLD_SIZE": "8", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, (6, 8)),
    ({"RANK": " 0\n", "WORLD_SIZE": "1"}, (0, 1)),
])
def test_shard_from_env_reads_the_launchers_variables(clean_env, variables, expected):
    for name, value in variables.items():
        clean_env.setenv(name, value)
    shard = shard_from_env()
    assert (shard["rank"], shard["world_size"]) == expected
    assert shard == {"rank": expected[0], "world_size": expected[1]}  # usable as **kwargs


@pytest.mark.parametrize("variables, message", [
    ({"RANK": "-1", "WORLD_SIZE": "2"}, r"RANK \(torchrun\) must be an integer >= 0; received: RANK='-1'"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, r"WORLD_SIZE \(torchrun\) must be an integer >= 1; received: WORLD_SIZE='0'"),
    ({"SLURM_PROCID": "1", "SLURM_NTASKS": "two"}, r"SLURM_NTASKS \(Slurm\) .* received: SLURM_NTASKS='two'"),
    ({"OMPI_COMM_WORLD_RANK": "4", "OMPI_COMM_WORLD_SIZE": "4"},
     r"OMPI_COMM_WORLD_RANK \(Open MPI\) must be in \[0, OMPI_COMM_WORLD_SIZE=4\); received: "
     r"OMPI_COMM_WORLD_RANK='4'"),
    ({"WORLD_SIZE": "2"}, r"WORLD_SIZE is set \(torchrun\) but RANK is not; received: WORLD_SIZE='2'"),
    ({"RANK": "1.5", "WORLD_SIZE": "2"}, r"RANK \(torchrun\) must be an integer >= 0; received: RANK='1.5'"),
])
def test_shard_from_env_refuses_bad_values_naming_the_variable(clean_env, variables, message):
    for name, value in variables.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        shard_from_env()


def test_shard_from_env_feeds_a_factory(clean_env):
    import awkgen

    clean_env.setenv("RANK", "1")
    clean_env.setenv("WORLD_SIZE", "2")
    gen = awkgen.DataGenerator(lambda ids: ids, list(range(10)), batch_size=5, shuffle=False, **shard_from_env())
    assert gen()[0] == [1, 3, 5, 7, 9]


JAX_PROCESS = """
import sys
import awkgen

assert "jax" not in sys.modules, "awkgen imported jax"
before = awkgen.shard_from_env()
import jax  # once the program uses JAX, its process index and count are what count

jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
print(before, awkgen.shard_from_env())
"""


def test_shard_from_env_asks_jax_only_when_the_program_imported_it():
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    coordinator = f"127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([sys.executable, "-c", JAX_PROCESS, coordinator, str(i)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [
        "{'rank': 0, 'world_size': 1} {'rank': 0, 'world_size': 2}",
        "{'rank': 0, 'world_size': 1} {'rank': 1, 'world_size': 2}",
    ]
