"""ART: ``to_art`` makes an awkgen generator a real ``art.data_generators.DataGenerator``.

ART's estimators check ``isinstance(generator, art.data_generators.DataGenerator)``
in ``fit_generator``, and its adversarial trainers read ``generator.size``; the
object :func:`to_art` returns passes both. ART is imported when it is called.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ..generator import BatchGenerator
from .base import DataGenerator, import_framework, to_numpy

if TYPE_CHECKING:
    import art.data_generators

__all__ = ["to_art"]


def to_art(gen: BatchGenerator | DataGenerator) -> art.data_generators.DataGenerator:
    """An ``art.data_generators.DataGenerator`` reading from *gen* (``size``, ``batch_size``, numpy ``(x, y)``).

    *gen* is an awkgen generator built with labels (``sample_cls``), or any
    :class:`~awkgen.frameworks.DataGenerator`; its ``iterator`` is *gen*.
    ``classifier.fit_generator(to_art(gen), nb_epochs=E)`` then trains from it.

    ART's generic ``fit_generator`` takes ``int(size / batch_size)`` batches per
    epoch (rounding down) and its adversarial trainers ``ceil``; awkgen's stream
    just continues, so every batch is used, but ART's epochs line up with awkgen's
    only when ``size`` is a multiple of ``batch_size`` (or with ``drop_last=True``).

    Needs ART (``pip install "awkgen[art]"``).

    Args:
        gen: An awkgen generator with labels, or another
            :class:`~awkgen.frameworks.DataGenerator`.

    Returns:
        An instance of a subclass of ``art.data_generators.DataGenerator``, whose
        ``get_batch()`` returns *gen*'s next ``(x, y)`` as numpy arrays.

    Raises:
        ImportError: ART is not installed.
        TypeError: *gen* is not an awkgen generator or a ``DataGenerator``.

    >>> import awkgen, numpy as np
    >>> gen = awkgen.DataGenerator(lambda ids: ids * 1.0, np.arange(6), np.arange(6) % 2, batch_size=3,
    ...                            shuffle=False)
    >>> art_gen = to_art(gen)
    >>> import art.data_generators
    >>> isinstance(art_gen, art.data_generators.DataGenerator), art_gen.size, art_gen.batch_size
    (True, 6, 3)
    >>> x, y = art_gen.get_batch()
    >>> x.tolist(), y.tolist()
    ([0.0, 1.0, 2.0], [0, 1, 0])
    """
    if not isinstance(gen, DataGenerator):
        raise TypeError("Expected gen to be an awkgen generator (or another DataGenerator). "
                        f"Received: {gen!r:.100} ({type(gen).__name__})")
    data_generators = import_framework("art.data_generators", "art", "to_art()")
    return _art_class(data_generators.DataGenerator)(gen)


@functools.cache
def _art_class(art_data_generator: type) -> type:
    """Define the ART subclass once ART is imported (its base class lives there)."""

    class AwkgenArtGenerator(art_data_generator):  # type: ignore[misc]  # a base class known at run time
        """An awkgen generator behind ART's ``DataGenerator`` interface; see :func:`to_art`."""

        def __init__(self, gen: BatchGenerator | DataGenerator) -> None:
            super().__init__(size=gen.size, batch_size=gen.batch_size)
            self._iterator = gen

        def get_batch(self) -> tuple[Any, ...]:
            batch = self._iterator.get_batch()
            if len(batch) < 2:
                raise ValueError("Expected batches (x, y), as ART trains on labelled data. Received: a batch "
                                 f"of {len(batch)} element(s); build the awkgen generator with sample_cls=labels")
            return tuple(to_numpy(item) for item in batch)

        def __repr__(self) -> str:
            return f"<awkgen ART DataGenerator over {self._iterator!r}>"

    return AwkgenArtGenerator
