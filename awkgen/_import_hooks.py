"""Run a function right after a module is imported, without importing it.

awkgen's classes must pass ART's ``isinstance(generator, art.data_generators.DataGenerator)``
checks, which needs ART's classes (to register awkgen's as their virtual subclasses), yet
``import awkgen`` must not import ART. :func:`when_imported` bridges the two: it calls
*callback(module)* at once if the module is already imported, else the moment an import
of it finishes, in whatever order the user imports things.

How: one :class:`_Watcher` on ``sys.meta_path`` (first, so that it sees the import).
For a watched name it asks the finders after it for the spec, and wraps the spec's
loader so that ``exec_module`` runs the callbacks after the module's own code; the
module's ``__loader__`` is then set back to the real loader, so nothing downstream
(``importlib.resources``, ``inspect.getsource``) sees the wrapper. Any other name costs
one dictionary lookup. A callback runs under the import lock, so it must only do
cheap, import-free work (awkgen's registers classes); an exception in it is logged,
never raised into the user's import. ``importlib.reload`` runs the callbacks again.

Libraries that do this (``wrapt.register_post_import_hook``) would add a compiled
dependency to the core for these forty lines.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["when_imported"]

_log = logging.getLogger("awkgen")
_lock = threading.Lock()
_callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once module *name* is imported (now, if it already is).

    >>> seen = []
    >>> when_imported("wave", lambda module: seen.append(module.__name__))
    >>> import wave
    >>> seen
    ['wave']
    """
    with _lock:
        _callbacks.setdefault(name, []).append(callback)
        if not any(isinstance(finder, _Watcher) for finder in sys.meta_path):
            sys.meta_path.insert(0, _Watcher())
    module = sys.modules.get(name)
    if module is not None:
        _run(callback, module)


def _run(callback: Callable[[ModuleType], None], module: ModuleType) -> None:
    try:
        callback(module)
    except Exception:  # never break the user's import
        _log.warning("awkgen: a hook after importing %s failed", module.__name__, exc_info=True)


class _Watcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of a watched module found by the finders after it."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _Watcher):
                continue
            find_spec = getattr(finder, "find_spec", None)
            spec: importlib.machinery.ModuleSpec | None = (
                find_spec(fullname, path, target) if find_spec is not None else None)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenRun(spec.loader, fullname)
        return spec


class _ThenRun(importlib.abc.Loader):
    """The real loader, then the callbacks; the module keeps the real loader."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        with _lock:
            callbacks = list(_callbacks.get(self._name, ()))
        for callback in callbacks:
            _run(callback, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
