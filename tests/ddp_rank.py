"""One rank of a real data-parallel run; ``tests/test_distributed.py`` launches two as torchrun would.

Each rank builds its generator with ``**awkgen.shard_from_env()`` (torchrun sets
``RANK``/``WORLD_SIZE``), trains a tiny ``DistributedDataParallel`` model over gloo
for a few epochs, twice with the same seed, and all-gathers the ids every rank saw
and the steps it took. Rank 0 writes them to the JSON file named on the command
line for the test to check::

    torchrun --standalone --nproc_per_node=2 tests/ddp_rank.py OUT.json SEED
"""

from __future__ import annotations

import json
import sys

import numpy as np

N_IDS = 96
BATCH_SIZE = 10
EPOCHS = 3
N_FEATURES = 4


def load(ids):
    """Features whose first column is the id itself, so a batch tells which samples it holds."""
    ids = np.asarray(ids, dtype=np.float32)
    return np.stack([ids, np.sin(ids), np.cos(ids), ids % 3], axis=1)


def main(out_path: str, seed: int) -> None:
    import torch.distributed as dist

    import awkgen

    dist.init_process_group("gloo")  # reads MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE like torchrun's ranks
    shard = awkgen.shard_from_env()
    assert shard == {"rank": dist.get_rank(), "world_size": dist.get_world_size()}, shard
    first = train(seed, shard)
    rerun = train(seed, shard)  # a fresh generator and model, the same seed
    if shard["rank"] == 0:
        with open(out_path, "w") as f:
            json.dump({"world_size": shard["world_size"], "runs": [first, rerun]}, f)
    # Both ranks reach this point before either tears gloo down: a rank that exits while its peer
    # still holds the connection aborts in torch's C++ ("terminate called without an active
    # exception", SIGABRT; 1 run in 2 to 6 here), not in anything awkgen does.
    dist.barrier()
    dist.destroy_process_group()


def train(seed: int, shard: dict[str, int]) -> dict[str, object]:
    """Train a fresh DDP model for EPOCHS epochs on this rank's shard.

    Returns, for every epoch and rank, the ids seen in order and the optimizer
    steps taken, and the trained weights (checked equal across ranks).
    """
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import awkgen

    world_size = shard["world_size"]
    ids = np.arange(N_IDS)
    labels = (ids % 2).astype(np.int64)
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(N_FEATURES, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    seen_by_epoch: list[list[list[int]]] = []  # [epoch][rank] -> ids in the order that rank saw them
    steps_by_epoch: list[list[int]] = []  # [epoch][rank] -> optimizer steps that rank took
    with awkgen.DataGeneratorMultiProc(load, ids, labels, batch_size=BATCH_SIZE, n_workers=2, backend="thread",
                                       seed=seed, **shard) as gen:
        for epoch in range(EPOCHS):
            seen: list[int] = []
            n_steps = 0
            while gen.epoch == epoch:  # the generator says when the epoch ends, not a shared step count
                x, y = gen()
                batch_ids = x[:, 0].astype(np.int64)
                np.testing.assert_array_equal(y, labels[batch_ids])
                seen.extend(batch_ids.tolist())
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
                loss.backward()  # DDP all-reduces gradients here
                optimizer.step()
                n_steps += 1
            everyone: list[list[int]] = [[] for _ in range(world_size)]
            dist.all_gather_object(everyone, seen)
            seen_by_epoch.append(everyone)
            steps: list[int] = [0] * world_size
            dist.all_gather_object(steps, n_steps)
            steps_by_epoch.append(steps)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    every_weights = [torch.empty_like(weights) for _ in range(world_size)]
    dist.all_gather(every_weights, weights)
    assert all(torch.equal(every_weights[0], w) for w in every_weights), "the DDP replicas diverged"
    return {"seen": seen_by_epoch, "steps": steps_by_epoch, "weights": weights.tolist()}


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
