"""The README's idioms as a user writes them, for ``mypy --strict`` (``make lint``, tests/test_typing.py).

Nothing here runs: every idiom sits in a function that is never called. Each line
must type-check as it stands; ``assert_type`` pins what a user's checker infers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

import awkgen
from awkgen import (
    BatchGenerator,
    CleanupGenerator,
    DataGenerator,
    DataGeneratorMultiProc,
    DataGeneratorNonblock,
    GeneratorStats,
)

if TYPE_CHECKING:
    from typing_extensions import assert_type


def loader(paths: list[str]) -> np.ndarray:
    return np.stack([np.load(p) for p in paths])


def quick_start(paths: list[str], labels: np.ndarray, flag: bool) -> None:
    gen = DataGeneratorMultiProc(loader, paths, sample_cls=labels, batch_size=64, n_workers=4, seed=0)
    assert_type(gen, BatchGenerator)
    x, y = gen()                     # the next batch
    assert_type(gen(), tuple[Any, ...])
    assert_type(next(gen), tuple[Any, ...])
    assert_type(gen.get_batch(), tuple[Any, ...])
    for batch in gen:
        assert_type(batch, tuple[Any, ...])
        break
    assert_type(gen(stop=True), None)  # workers exit, shared memory is freed
    assert_type(gen(stop=False), tuple[Any, ...])
    assert_type(gen(flag), tuple[Any, ...] | None)
    assert_type(CleanupGenerator(gen), None)


def other_factories(ids: np.ndarray) -> None:
    with DataGenerator(lambda batch: batch, ids, batch_size=8, seed=1) as gen:
        (x,) = gen()
    nonblock = DataGeneratorNonblock(lambda batch: batch, ids, None, 8, seed=1)
    assert_type(nonblock, BatchGenerator)
    threads = DataGeneratorMultiProc(lambda batch: batch, list(ids), batch_size=8, backend="thread", timeout=5.0)
    assert_type(threads.n_workers, int)
    assert_type(threads.closed, bool)


def state_and_stats(gen: BatchGenerator) -> str:
    state = gen.state_dict()
    gen.load_state_dict(state)
    stats = gen.stats()
    assert_type(stats, GeneratorStats)
    epoch: int = gen.epoch
    step: int = gen.step
    return f"{epoch}/{step} {stats.verdict} {stats.as_dict()['batches']}"


def skipping_bad_batches(gen: BatchGenerator, steps: int) -> None:
    for _ in range(steps):
        try:
            x, y = gen()
        except (awkgen.LoaderError, awkgen.WorkerDiedError) as err:
            print(err.step, err.epoch, err.ids[:3], err.pid, err.exitcode, err.signal)
            continue


def loop_habits(gen: BatchGenerator) -> None:
    assert_type(len(gen), int)
    for x, y in gen.one_epoch():     # one epoch, then the loop ends
        print(x, y)
    print(len(gen.one_epoch()))


def is_a_generator(obj: object) -> bool:
    return isinstance(obj, awkgen.BatchGenerator)


def bridges(gen: BatchGenerator) -> None:
    from awkgen import frameworks as fw

    keras_data = gen.as_keras()
    print(len(keras_data))
    data = gen.as_torch()
    steps: int = len(data)           # the docs promise a length
    for tx, ty in data:
        print(tx.shape, ty.shape, steps)
    print(gen.as_tf().cardinality())
    art_gen = fw.to_art(gen)
    print(art_gen.size, art_gen.batch_size)
    assert isinstance(gen, fw.DataGenerator)
