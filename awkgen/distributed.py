"""This process's place in a data-parallel job, read from what its launcher set.

Every launcher tells each process its rank and the number of processes through
environment variables; :func:`shard_from_env` reads them, so one line gives each
rank its own disjoint shard of every epoch::

    gen = DataGeneratorMultiProc(loader, ids, labels, batch_size=64, seed=0, **shard_from_env())

All ranks must pass the same ids and the same ``seed``: they compute the same epoch
permutation and each takes its own stride of it (see :mod:`awkgen.sampling`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

__all__ = ["shard_from_env"]

#: (launcher, rank variable, world-size variable), in the order they are looked for.
#: torchrun comes first: under Slurm or MPI it may run several ranks per task.
LAUNCHER_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("torchrun", "RANK", "WORLD_SIZE"),
    ("Slurm", "SLURM_PROCID", "SLURM_NTASKS"),
    ("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
)


def shard_from_env(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """``{"rank": ..., "world_size": ...}`` for this process, to pass as ``**kwargs`` to a factory.

    *environ* defaults to :data:`os.environ`. The first launcher whose variables are
    set wins: torchrun's ``RANK``/``WORLD_SIZE``, Slurm's ``SLURM_PROCID``/
    ``SLURM_NTASKS``, Open MPI's ``OMPI_COMM_WORLD_RANK``/``OMPI_COMM_WORLD_SIZE``;
    then, only if the program has already imported JAX, ``jax.process_index()`` and
    ``jax.process_count()`` (awkgen never imports JAX itself); else rank 0 of 1.

    Args:
        environ: The environment to read; ``None``: :data:`os.environ`.

    Returns:
        ``{"rank": r, "world_size": n}``, ready for ``DataGeneratorMultiProc(...,
        **shard_from_env())``; ``{"rank": 0, "world_size": 1}`` when no launcher is found.

    Raises:
        ValueError: A variable is not a whole number, the rank is outside ``[0,
            world_size)``, or only one variable of a launcher's pair is set; the message
            names the variable and its value.

    >>> shard_from_env({})
    {'rank': 0, 'world_size': 1}
    >>> shard_from_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    {'rank': 1, 'world_size': 4}
    >>> shard_from_env({"SLURM_PROCID": "2", "SLURM_NTASKS": "3"})
    {'rank': 2, 'world_size': 3}
    >>> shard_from_env({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"})
    {'rank': 0, 'world_size': 2}

    A value that is not a count, a rank outside the world, or half a pair is an error:

    >>> shard_from_env({"RANK": "one", "WORLD_SIZE": "2"})
    Traceback (most recent call last):
    ...
    ValueError: RANK (torchrun) must be an integer >= 0; received: RANK='one'
    >>> shard_from_env({"RANK": "2", "WORLD_SIZE": "2"})
    Traceback (most recent call last):
    ...
    ValueError: RANK (torchrun) must be in [0, WORLD_SIZE=2); received: RANK='2'
    >>> shard_from_env({"SLURM_PROCID": "0"})
    Traceback (most recent call last):
    ...
    ValueError: SLURM_PROCID is set (Slurm) but SLURM_NTASKS is not; received: SLURM_PROCID='0'
    """
    env = os.environ if environ is None else environ
    for launcher, rank_var, size_var in LAUNCHER_VARIABLES:
        rank_text, size_text = env.get(rank_var), env.get(size_var)
        if rank_text is None and size_text is None:
            continue
        if rank_text is None or size_text is None:
            present, missing = (rank_var, size_var) if size_text is None else (size_var, rank_var)
            raise ValueError(f"{present} is set ({launcher}) but {missing} is not; received: "
                             f"{present}={env[present]!r}")
        world_size = _parse(size_var, size_text, launcher, minimum=1)
        rank = _parse(rank_var, rank_text, launcher, minimum=0)
        if rank >= world_size:
            raise ValueError(f"{rank_var} ({launcher}) must be in [0, {size_var}={world_size}); "
                             f"received: {rank_var}={rank_text!r}")
        return {"rank": rank, "world_size": world_size}
    jax = sys.modules.get("jax")
    if jax is not None:
        return {"rank": int(jax.process_index()), "world_size": int(jax.process_count())}
    return {"rank": 0, "world_size": 1}


def _parse(name: str, text: str, launcher: str, minimum: int) -> int:
    stripped = text.strip()
    if not (stripped.isascii() and stripped.isdigit()) or int(stripped) < minimum:
        raise ValueError(f"{name} ({launcher}) must be an integer >= {minimum}; received: {name}={text!r}")
    return int(stripped)
