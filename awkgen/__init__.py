"""awkgen: feed a training loop from data that does not fit in memory.

The public surface is the four factories of the R package AwkwardMLTools, the
generator they build, the errors they raise, ``shard_from_env`` and ``empty`` (a
loader's arrays built in shared memory); framework bridges live in
:mod:`awkgen.frameworks`, the R toolkit in :mod:`awkgen.images` and
:mod:`awkgen.classes`, each imported only when used. Importing awkgen imports no
machine-learning framework (with ART installed, a hook makes ART's ``isinstance``
checks accept awkgen's classes once ART is imported).
"""

import logging as _logging
from types import ModuleType as _ModuleType

from ._import_hooks import when_imported as _when_imported
from .distributed import shard_from_env
from .errors import (
    AwkgenError,
    GeneratorStoppedError,
    LoaderError,
    LoaderTimeoutError,
    WorkerDiedError,
    WorkerStartError,
)
from .factories import CleanupGenerator, DataGenerator, DataGeneratorMultiProc, DataGeneratorNonblock
from .generator import BatchGenerator, GeneratorStats
from .transport import empty

__version__ = "0.1.0"

# Debug events (worker starts, deaths, replacements, stops) and warnings go to this logger;
# like any library, awkgen prints nothing unless the application configures logging.
_logging.getLogger("awkgen").addHandler(_logging.NullHandler())


def _accepted_by_art(module: _ModuleType) -> None:
    """Once ART is imported (before or after awkgen), its ``isinstance`` checks accept awkgen's classes."""
    from .frameworks.base import register_twins

    register_twins(module)


_when_imported("art.data_generators", _accepted_by_art)

__all__ = [
    "DataGenerator",
    "DataGeneratorNonblock",
    "DataGeneratorMultiProc",
    "CleanupGenerator",
    "BatchGenerator",
    "GeneratorStats",
    "AwkgenError",
    "LoaderError",
    "WorkerDiedError",
    "WorkerStartError",
    "LoaderTimeoutError",
    "GeneratorStoppedError",
    "shard_from_env",
    "empty",
    "__version__",
]
