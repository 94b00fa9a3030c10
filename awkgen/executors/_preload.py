"""What the forkserver imports once, before it forks any worker (its preload list, set in :mod:`.process`).

A worker is a fork of the forkserver: whatever the server imported or built before the fork,
every worker has for free; whatever it did not, each worker pays again, all of them at once
when a pool starts. So the server imports here:

- the worker's own code (:mod:`._worker`: numpy, dill, tblib, threadpoolctl, awkgen's transport);
- :mod:`.process` itself: a worker's process object names its class (``_WorkerProcess``), and
  unpickling it imported ``process`` and multiprocess's launcher modules in every worker, the
  largest part of a worker's start (15-20 ms each);
- the thread pools of the native libraries already loaded (numpy's BLAS, found by threadpoolctl's
  scan of the loaded libraries, 1-3 ms): :data:`._worker.THREADPOOLS`, so a worker only sets their
  thread count. Libraries a loader brings in later are capped through the environment, as before.

Importing this module elsewhere does no harm: it is what importing :mod:`.process` does, plus that scan.
"""

from __future__ import annotations

import os

from threadpoolctl import ThreadpoolController

from . import _worker, process  # noqa: F401 - imported for the forks: see above

_worker.THREADPOOLS = ThreadpoolController()
_worker.PRELOADED_IN = os.getpid()
