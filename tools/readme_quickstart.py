"""Run README.rst's quick start as written, with what it leaves to the reader made up.

The quick start's ``python`` code block is taken from the README and executed after a
prelude that writes ``paths`` (one ``.npy`` file per sample) and ``labels``, and
defines ``model``: a stand-in for a Keras model whose ``fit`` reads batches the way
Keras reads a generator, so the block needs nothing but awkgen's core dependencies.
Then it checks what the README promises: ``(x, y)`` batches of the loader's arrays,
and after ``gen(stop=True)`` no worker and no ``/dev/shm`` segment of this process.

Run it with the interpreter of the environment to check (``make test`` uses fresh venvs
that hold only the installed wheel and its core dependencies)::

    python tools/readme_quickstart.py README.rst
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import textwrap
import time

import numpy as np

CORE_ONLY = {"numpy", "multiprocess", "dill", "tblib", "threadpoolctl"}
NOT_CORE = ("tqdm", "torch", "tensorflow", "keras", "jax", "ray", "art", "sklearn", "PIL", "mxnet")


def quick_start(readme: str) -> str:
    """The first ``.. code-block:: python`` of README's "Quick start" section, dedented."""
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    section = re.search(r"^Quick start\n=+\n(.*?)^\S[^\n]*\n=+\n", text, re.S | re.M)
    if section is None:
        raise SystemExit(f"{readme} has no 'Quick start' section")
    block = re.search(r"^\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", section.group(1), re.M)
    if block is None:
        raise SystemExit(f"{readme}'s quick start has no python code block")
    return textwrap.dedent(block.group(1))


class FakeModel:
    """What the quick start needs of a Keras model: ``fit`` reads ``next(gen)`` as Keras does."""

    def __init__(self) -> None:
        self.batches: list[tuple[np.ndarray, ...]] = []

    def fit(self, gen, steps_per_epoch: int, epochs: int, shuffle: bool = True) -> None:
        assert shuffle is False, "the quick start must not ask Keras to shuffle a generator (Keras warns)"
        for _ in range(steps_per_epoch * epochs):
            self.batches.append(next(gen))


def segments(pid: int) -> list[str]:
    shm = "/dev/shm"
    return sorted(n for n in os.listdir(shm) if n.startswith(f"awkgen-{pid}-")) if os.path.isdir(shm) else []


def main(readme: str) -> int:
    import awkgen

    code = quick_start(readme)
    with tempfile.TemporaryDirectory(prefix="awkgen-quickstart-") as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(200):
            path = os.path.join(tmp, f"{i}.npy")
            np.save(path, np.full((8, 8), i, dtype=np.float32))
            paths.append(path)
        labels = rng.integers(0, 10, size=len(paths))
        model = FakeModel()
        namespace = {"paths": paths, "labels": labels, "model": model, "__name__": "__main__"}
        exec(compile(code, "README.rst (quick start)", "exec"), namespace)

        gen = namespace["gen"]
        x, y = namespace["x"], namespace["y"]
        assert x.shape == (64, 8, 8) and y.shape == (64,), (x.shape, y.shape)
        assert len(model.batches) == 5 * gen.steps_per_epoch, len(model.batches)
        for bx, by in model.batches:
            ids = bx[:, 0, 0].astype(int)  # each file holds its own index
            assert (by == labels[ids]).all(), "labels do not match the batch's files"
        try:
            gen()
        except awkgen.GeneratorStoppedError:
            pass
        else:
            raise AssertionError("a stopped generator returned a batch")

    deadline = time.monotonic() + 10
    while segments(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not segments(os.getpid()), f"left in /dev/shm after gen(stop=True): {segments(os.getpid())}"
    extra = [name for name in NOT_CORE if name in sys.modules]
    assert not extra, f"the quick start imported {extra}: not core dependencies"
    print(f"README quick start ran on Python {sys.version.split()[0]} with awkgen {awkgen.__version__} "
          f"from {os.path.dirname(awkgen.__file__)}: {len(model.batches) + 1} batches, nothing left in /dev/shm")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "README.rst"))
