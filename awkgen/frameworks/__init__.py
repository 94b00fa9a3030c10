"""awkgen meets the frameworks: ART's data-generator classes, ``to_art``, and bridges out.

Nothing here imports a framework until it is used: ``import awkgen.frameworks``
is cheap, and each name below is loaded from its module on first access. A
missing framework raises an ``ImportError`` that names the extra to install.

Names and the modules they live in:

- ``base``: ``DataGenerator``, ART's abstract interface; every awkgen generator is one.
- ``keras``: ``KerasDataGenerator`` (a PyDataset, Sequence or generator) and ``as_keras``
  (an awkgen generator as a ``keras.utils.PyDataset`` of one epoch).
- ``torch``: ``PyTorchDataGenerator`` (a ``DataLoader``) and ``as_torch`` (an
  ``IterableDataset`` of tensors, one epoch per pass).
- ``tensorflow``: ``TensorFlowDataGenerator`` (a TF1 graph-mode iterator),
  ``TensorFlowV2DataGenerator`` (a ``tf.data.Dataset``) and ``as_tf`` (an awkgen
  generator as a ``tf.data.Dataset``).
- ``mxnet``: ``MXDataGenerator`` (a Gluon ``DataLoader``).
- ``arrays``: ``NumpyDataGenerator``, ART's generator over in-memory arrays, shuffled per
  epoch by awkgen's plan.
- ``art``: ``to_art``, an awkgen generator as an instance of a real subclass of
  ``art.data_generators.DataGenerator`` (rarely needed: with ART installed, every class
  here and every awkgen generator already passes ART's ``isinstance`` checks).

>>> import awkgen, awkgen.frameworks as fw
>>> isinstance(awkgen.DataGenerator(lambda ids: ids, [1, 2, 3], batch_size=2), fw.DataGenerator)
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .arrays import NumpyDataGenerator
    from .art import to_art
    from .base import DataGenerator
    from .keras import KerasDataGenerator, as_keras
    from .mxnet import MXDataGenerator
    from .tensorflow import TensorFlowDataGenerator, TensorFlowV2DataGenerator, as_tf
    from .torch import PyTorchDataGenerator, as_torch

_WHERE = {
    "DataGenerator": "base",
    "KerasDataGenerator": "keras",
    "PyTorchDataGenerator": "torch",
    "TensorFlowDataGenerator": "tensorflow",
    "TensorFlowV2DataGenerator": "tensorflow",
    "MXDataGenerator": "mxnet",
    "NumpyDataGenerator": "arrays",
    "to_art": "art",
    "as_keras": "keras",
    "as_torch": "torch",
    "as_tf": "tensorflow",
}

__all__ = [
    "DataGenerator",
    "KerasDataGenerator",
    "PyTorchDataGenerator",
    "TensorFlowDataGenerator",
    "TensorFlowV2DataGenerator",
    "MXDataGenerator",
    "NumpyDataGenerator",
    "to_art",
    "as_keras",
    "as_torch",
    "as_tf",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
