"""One walker over nested results: tuples, lists and dicts are structure, the rest are leaves.

The framework bridges convert results as trees: they turn leaves into numpy arrays,
tensors or ``tf.TensorSpec`` with :func:`map_tree`. (Results no longer travel through it:
the transport pickles a result whole and swaps its arrays in the pickler, see
:func:`awkgen.transport.encode_result`, so every node's type and shared reference survive.)
Framework helpers (``tf.nest``, ``torch.utils._pytree``, ``jax.tree_util``) would do,
but the core imports no framework.

It is a plain recursive function, not a closure: a closure that calls itself is a
reference cycle, and one holding a slot's bytes would keep the slot leased until the
next garbage collection.

>>> map_tree({"x": [1, 2], "y": (3,)}, lambda v: v * 10)
{'x': [10, 20], 'y': (30,)}
>>> map_tree({"x": [1, 2]}, lambda v: v * 2, lists=False)  # a list is a leaf
{'x': [1, 2, 1, 2]}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["map_tree"]


def map_tree(value: Any, leaf: Callable[[Any], Any], *, lists: bool = True, exact: bool = True) -> Any:
    """Rebuild *value* through tuples, lists and dicts, applying *leaf* to everything else.

    Tuples keep their class (a namedtuple stays one). With *exact* (the transport's
    rule: what comes back is what the loader returned) only plain ``list`` and ``dict``
    are structure, and their subclasses are leaves, which travel whole, pickled;
    ``exact=False`` (the bridges' rule) walks subclasses too and rebuilds them as
    plain lists and dicts. ``lists=False`` makes lists leaves (a list of numbers is
    data for :func:`numpy.asarray`).
    """
    if isinstance(value, tuple):
        items = [map_tree(v, leaf, lists=lists, exact=exact) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if type(value) is dict or (not exact and isinstance(value, dict)):
        return {k: map_tree(v, leaf, lists=lists, exact=exact) for k, v in value.items()}
    if lists and (type(value) is list or (not exact and isinstance(value, list))):
        return [map_tree(v, leaf, lists=lists, exact=exact) for v in value]
    return leaf(value)
