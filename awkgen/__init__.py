"""awkgen: feed a training loop from data that does not fit in memory.

The public surface is the four factories of the R package AwkwardMLTools, the
errors they raise and ``shard_from_env``; framework bridges live in
:mod:`awkgen.frameworks` and are imported only when used. Importing awkgen imports
no machine-learning framework.
"""

import logging as _logging

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

__version__ = "0.1.0"

# Debug events (worker starts, deaths, replacements, stops) and warnings go to this logger;
# like any library, awkgen prints nothing unless the application configures logging.
_logging.getLogger("awkgen").addHandler(_logging.NullHandler())

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
    "__version__",
]
