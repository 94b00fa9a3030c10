"""Run the Python blocks of README.rst and the guide pages (docs/*.rst) as written.

Every ``.. code-block:: python`` block runs, in a child interpreter of its own and a temporary
working directory, after a prelude that makes what a reader brings: ``paths`` and ``labels``
(one ``.npy`` file per sample, or digit images where the block decodes images; ``paths.npy``
and ``onehot.npy`` where it loads them; labels for a billion ids where it has that many),
``loader``, ``model`` (a Keras model for those files), ``gen`` where a block uses one it does
not build, ``decode``, ``build_model``, an ART ``classifier``, and the environment a launcher
would set (``torchrun``'s variables, Ray's auth mode). The block's own text is not changed.
Blocks marked ``:class: signatures`` are signatures, not code, and are skipped.

A block fails if it raises or if it warns (``UserWarning``, ``RuntimeWarning``: Keras'
"shuffle=True was passed, but will be ignored" is one).

    python tools/doc_blocks.py                 # list the blocks
    python tools/doc_blocks.py README.rst:24   # run one
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ["README.rst"] + sorted(os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs"))
                                  if name.endswith(".rst"))


@dataclass(frozen=True)
class Block:
    source: str
    line: int
    code: str

    @property
    def name(self) -> str:
        return f"{self.source}:{self.line}"


_DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. code-block:: python\n(?P<options>(?:(?P=indent)   :.*\n)*)\n", re.M)


def blocks() -> list[Block]:
    """Every python code block of the sources, but signatures, once each (a page may repeat one)."""
    found: list[Block] = []
    seen: set[str] = set()
    for source in SOURCES:
        with open(os.path.join(ROOT, source), encoding="utf-8") as f:
            text = f.read()
        for match in _DIRECTIVE.finditer(text):
            if ":class: signatures" in match.group("options"):
                continue
            indent = len(match.group("indent")) + 3
            body = []
            for line in text[match.end():].splitlines():
                if line.strip() and len(line) - len(line.lstrip()) < indent:
                    break
                body.append(line)
            code = textwrap.dedent("\n".join(body)).strip() + "\n"
            if code not in seen:
                seen.add(code)
                found.append(Block(source, text[:match.start()].count("\n") + 1, code))
    return found


PRELUDE = r'''
import os, sys, tempfile, warnings
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import awkgen
from awkgen import DataGeneratorMultiProc

_tmp = tempfile.mkdtemp(prefix="awkgen-doc-block-")
_code = open(sys.argv[1], encoding="utf-8").read()
if "load_image_batch" in _code or "load_digits_batch" in _code:  # the block decodes image files
    from awkgen.datasets import digits_on_disk, load_digits_batch
    from awkgen.images import load_image_batch
    paths, labels = digits_on_disk(_tmp)
    paths, labels = paths[:400], labels[:400]
else:
    paths = []
    for _i in range(256):
        paths.append(os.path.join(_tmp, f"{_i}.npy"))
        np.save(paths[-1], np.full((8, 8), _i, dtype=np.float32))
    labels = np.random.default_rng(0).integers(0, 10, size=len(paths))


if "paths.npy" in _code:  # the reader's path list and one-hot labels, saved as the block says
    np.save("paths.npy", np.array(paths, dtype="S64"))
    np.save("onehot.npy", np.eye(10, dtype=np.float32)[labels])
if "10**9" in _code:  # labels for a billion ids, as lazy as the ids: one value, broadcast
    labels = np.broadcast_to(np.int64(0), (10**9,))


def loader(paths):
    return np.stack([np.load(p) for p in paths])


def decode(path):
    return np.zeros((224, 224, 3), dtype=np.uint8)


def build_model():
    import torch
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))


if re.search(r"\bmodel\.fit\b", _code) and "model =" not in _code:
    import keras
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
if "classifier" in _code:
    import torch
    from art.attacks.evasion import FastGradientMethod
    from art.defences.trainer import AdversarialTrainer
    from art.estimators.classification import PyTorchClassifier
    torch.set_num_threads(1)
    _net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    classifier = PyTorchClassifier(_net, loss=torch.nn.CrossEntropyLoss(), input_shape=(8, 8, 1), nb_classes=10,
                                   optimizer=torch.optim.Adam(_net.parameters(), lr=0.01), clip_values=(0.0, 1.0))
if "dist.init_process_group" in _code:  # what torchrun sets
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2])
if re.search(r"\bgen\b", _code) and not re.search(r"^\s*gen = ", _code, re.M):
    gen = DataGeneratorMultiProc(loader, paths, labels, batch_size=32, n_workers=2, seed=0)

with warnings.catch_warnings(record=True) as _caught:
    warnings.simplefilter("always")
    exec(compile(_code, sys.argv[3], "exec"))
_bad = [w for w in _caught if issubclass(w.category, (UserWarning, RuntimeWarning))]
assert not _bad, "the block warned: " + "; ".join(f"{w.category.__name__}: {w.message}" for w in _bad)
if "gen" in globals() and not gen.closed:
    gen.close()
print("ran", sys.argv[3])
'''


def run(block: Block, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run *block* after the prelude in a child interpreter of this one; return the finished process."""
    with socket.socket() as s:  # a free port for torch.distributed's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="awkgen-doc-block-") as folder:  # the block's working directory
        path = os.path.join(folder, "block.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(block.code)
        return subprocess.run([sys.executable, "-c", "import re\n" + PRELUDE, path, str(port), block.name],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def main(argv: list[str]) -> int:
    found = blocks()
    if not argv:
        for block in found:
            print(block.name, block.code.splitlines()[0])
        return 0
    status = 0
    for block in found:
        if block.name in argv:
            done = run(block)
            print(done.stdout, done.stderr[-3000:] if done.returncode else "", sep="")
            status |= done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
