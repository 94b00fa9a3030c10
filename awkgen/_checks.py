"""The integer checks shared by the factories, the generator's ``load_state_dict`` and the bridges.

One rule everywhere: an integer is any :class:`numbers.Integral` (numpy's included)
except a bool, which is almost always a mistake (``batch_size=True``). ART's own
checks (``awkgen.frameworks.base``) keep ART's rules instead.

>>> import numpy as np
>>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
(True, True, False, False)
>>> check_int("batch_size", 0, minimum=1)
Traceback (most recent call last):
...
ValueError: batch_size must be >= 1; received: 0
"""

from __future__ import annotations

import numbers
from typing import TypeGuard

__all__ = ["is_int", "check_int"]


def is_int(value: object) -> TypeGuard[int]:
    """Whether *value* is an integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: object, minimum: int) -> int:
    """*value* as an ``int``, else ``TypeError`` (not an integer) or ``ValueError`` (below
    *minimum*), naming the argument and the value received."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int; received: {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; received: {value!r}")
    return int(value)
