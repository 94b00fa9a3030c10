"""Which awkgen a process runs, for the handshake between a pool and its workers.

A pool's workers are other interpreters: the process backend's forkserver and Ray's
worker processes import awkgen themselves, from their own ``sys.path``. When that
finds another copy than the parent's (``PYTHONPATH`` naming an older tree, an editable
checkout next to an installed release, files changed after the parent imported
them), parent and workers would speak different protocols: a worker dying on its
arguments, a result of a class with other fields. So each worker says which awkgen it
runs before anything else, and the parent refuses workers that run other code with
one :class:`~awkgen.WorkerStartError` naming both.

:data:`IDENTITY` is computed once, when this module is first imported: the version,
where the package lies, and a digest of its source files as they were then (about a
millisecond). Same version and digest count as the same code; the path may differ
(two checkouts of one commit).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, NamedTuple

__all__ = ["Identity", "IDENTITY", "mismatch"]


class Identity(NamedTuple):
    """Which awkgen a process runs; travels as a plain tuple, which any version can unpickle.

    >>> me = Identity("1.0", "/a/awkgen", "abc")
    >>> me.same_code(Identity.of(("1.0", "/b/awkgen", "abc"))), me.same_code(Identity.of(42))
    (True, False)
    >>> str(me)
    'awkgen 1.0 from /a/awkgen (files abc)'
    """

    version: str
    path: str
    digest: str

    @classmethod
    def of(cls, value: Any) -> Identity | None:
        """*value* as received (a tuple of three strings), or ``None`` for anything else."""
        if isinstance(value, tuple) and len(value) == 3 and all(isinstance(v, str) for v in value):
            return cls(*value)
        return None

    def same_code(self, other: Identity | None) -> bool:
        """Same version and same files; the path may differ."""
        return other is not None and (self.version, self.digest) == (other.version, other.digest)

    def __str__(self) -> str:
        return f"awkgen {self.version} from {self.path} (files {self.digest})"


def _identity() -> Identity:
    from .. import __version__

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256()
    for directory, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                digest.update(os.path.relpath(path, root).encode() + b"\0")
                try:
                    with open(path, "rb") as f:
                        digest.update(f.read())
                except OSError:  # unreadable: its name still counts
                    pass
    return Identity(__version__, root, digest.hexdigest()[:16])


#: This process's awkgen. The forkserver imports it (with the worker module) before it forks
#: any worker, so workers report the code the server loaded, whatever sys.path says later.
IDENTITY = _identity()


def mismatch(workers: str, theirs: Identity | None, remedy: str) -> str:
    """Why a pool cannot use *workers* that run *theirs*, another awkgen than this process's."""
    them = str(theirs) if theirs is not None else "an awkgen that does not say which (an older one)"
    return (f"{workers} run another awkgen than this process: they run {them}, this process runs {IDENTITY}. "
            f"{remedy}")
