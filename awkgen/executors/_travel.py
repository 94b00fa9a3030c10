"""How a loader, its ids and its results travel to workers and back: one story for every backend.

What travels how:

- **Installed packages** (anything under ``site-packages``/``dist-packages`` or the
  standard library) travel *by reference*: the worker imports them.
- **Your own code** (``__main__``, a notebook, modules next to your script or on a path
  you added, not installed) travels *by value* where the worker might not import it:
  the process backend pickles the loader with dill (``__main__`` by value; other modules
  by reference, since workers get the parent's ``sys.path``; a module object a loader
  holds is always sent by reference, never its whole contents); the Ray backend pickles
  with cloudpickle, registering every such module *by value* for that one pickle, and
  the actors also get the driver's own ``sys.path`` entries that exist on their node,
  so a module the loader imports lazily is found on a local cluster. For a remote
  cluster, ship a whole project with ``ray.init(runtime_env={"working_dir": ...})``.
- **Classes of your own** come back as *the same class*: a worker re-registers the
  classes that travelled by value with the loader under their module and name
  (:func:`adopt_classes`), so results and ids pickle them by reference again and the
  parent's ``isinstance`` holds (results on Ray too: they are pickled by awkgen's own
  codec, :func:`awkgen.transport.encode_result`, not by Ray's serializer).
- **Results**: plain numpy arrays go through shared memory (Ray: the object store);
  array subclasses (masked arrays, ``np.matrix``, record arrays) and everything else are
  pickled, so they keep their class, mask and fields.

A loader that cannot travel fails at construction with :func:`unpicklable` (one
wording for every backend).
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import io
import os
import pickle
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["user_paths", "user_modules", "pickle_by_value", "adopt_classes", "unpicklable", "dill_dumps",
           "add_paths", "cloudpickle_dumps"]


def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots.update(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # awkgen itself
    return tuple(os.path.abspath(r) + os.sep for r in roots)


def _is_users(path: str, installed: tuple[str, ...]) -> bool:
    path = os.path.abspath(path)
    return not (path + os.sep).startswith(installed) and not path.endswith(".zip")


def user_paths() -> list[str]:
    """This process's ``sys.path`` entries that hold the user's own code (not installed packages)."""
    installed = _installed_roots()
    entries = [os.path.abspath(p or os.curdir) for p in sys.path]
    return [p for p in dict.fromkeys(entries) if os.path.isdir(p) and _is_users(p, installed)]


def user_modules() -> list[types.ModuleType]:
    """Imported modules that are the user's own code: a file outside every installed root."""
    installed = _installed_roots()
    found = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name == "__main__" or not isinstance(module, types.ModuleType) or not path:
            continue
        if _is_users(path, installed):
            found.append(module)
    return found


def cloudpickle_dumps(cloudpickle: Any, loader: Any) -> bytes:
    """The Ray backend's pickle of *loader*: cloudpickle with the user's modules by value
    (:func:`pickle_by_value`), except module *objects* the loader holds, which go by
    reference like dill's (by value they would carry every global of the module)."""

    class ModulesByReference(cloudpickle.Pickler):  # type: ignore[misc]
        dispatch_table = collections.ChainMap({types.ModuleType: _module_by_reference},
                                              cloudpickle.Pickler.dispatch_table)

    buffer = io.BytesIO()
    with pickle_by_value(cloudpickle):
        ModulesByReference(buffer, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(loader)
    return buffer.getvalue()


def _module_by_reference(module: types.ModuleType) -> Any:
    if module.__name__ == "__main__":
        from ray import cloudpickle

        return cloudpickle.Pickler.dispatch_table[types.ModuleType](module)
    return (_import, (module.__name__,))


@contextlib.contextmanager
def pickle_by_value(cloudpickle: Any) -> Iterator[None]:
    """While inside, *cloudpickle* pickles every user module by value (then back as it was)."""
    registered = []
    for module in user_modules():
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:  # already registered by the user, or not registrable: leave it
            continue
        registered.append(module)
    try:
        yield
    finally:
        for module in registered:
            with contextlib.suppress(ValueError):
                cloudpickle.unregister_pickle_by_value(module)


def adopt_classes(loader: Any, depth: int = 6) -> None:
    """Register the classes that came with *loader* by value under their module and name.

    A class defined in the user's ``__main__`` (or a module a worker cannot import)
    arrives as a fresh class object, unknown to the worker's ``sys.modules``; pickle would
    then send instances of it back by value, and the parent would get a class that fails
    ``isinstance``. Registered here, they pickle by reference (``__main__.Point``) and
    the parent resolves that name to its own class.
    """
    seen: set[int] = set()
    for cls in _classes_reachable(loader, depth, seen):
        module_name, qualname = cls.__module__, cls.__qualname__
        if "<" in qualname or "." in qualname:  # local or nested: no name to register under
            continue
        module = sys.modules.get(module_name)
        if module is None:
            module = sys.modules[module_name] = types.ModuleType(module_name)
        if getattr(module, qualname, None) is not cls and _travelled_by_value(module, qualname):
            setattr(module, qualname, cls)


def _travelled_by_value(module: types.ModuleType, qualname: str) -> bool:
    """A name the worker's own module does not define (or ``__main__``, which is never the user's here)."""
    return module.__name__ == "__main__" or not hasattr(module, qualname)


def _classes_reachable(value: Any, depth: int, seen: set[int]) -> Iterator[type]:
    if depth < 0 or id(value) in seen:
        return
    seen.add(id(value))
    children: list[Any] = []
    if isinstance(value, type):
        if value.__module__ in ("builtins",):
            return
        yield value
        module = sys.modules.get(value.__module__)
        if module is None or getattr(module, value.__qualname__, None) is not value:  # came by value:
            for member in vars(value).values():  # what its methods use came with it
                member = getattr(member, "__func__", member)  # staticmethod, classmethod
                if isinstance(member, types.FunctionType):
                    children.append(member)
        for child in children:
            yield from _classes_reachable(child, depth - 1, seen)
        return
    if isinstance(value, types.FunctionType):
        names = _names(value.__code__)
        children += [v for k, v in value.__globals__.items() if k in names]
        for cell in value.__closure__ or ():
            try:
                children.append(cell.cell_contents)
            except ValueError:  # an empty cell: a closure over a name assigned later
                pass
    elif isinstance(value, types.MethodType):
        children += [value.__func__, value.__self__]
    elif hasattr(value, "func") and hasattr(value, "keywords"):  # functools.partial
        children += [value.func, *value.args, *value.keywords.values()]
    elif not isinstance(value, (types.ModuleType, types.BuiltinFunctionType)):
        children.append(type(value))
        children += list(getattr(value, "__dict__", {}).values())
    for child in children:
        yield from _classes_reachable(child, depth - 1, seen)


def _names(code: types.CodeType) -> set[str]:
    """Global names *code* uses, with those of the code nested in it (comprehensions, lambdas)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def dill_dumps(loader: Any) -> bytes:
    """The process backend's pickle of *loader*: dill, ``recurse`` (only the globals the loader
    uses travel), and module objects by reference (dill would send a module that is not
    installed by value: all of its globals, to every worker)."""
    buffer = io.BytesIO()
    _ModulesByReference(buffer, protocol=pickle.HIGHEST_PROTOCOL, recurse=True).dump(loader)
    return buffer.getvalue()


def _import(name: str) -> types.ModuleType:
    return importlib.import_module(name)


def _save_module(pickler: Any, module: types.ModuleType) -> None:
    if module.__name__ == "__main__":
        _DILL_SAVE_MODULE(pickler, module)
    else:
        pickler.save_reduce(_import, (module.__name__,), obj=module)


def _dill_pickler() -> Any:
    import dill

    return dill.Pickler


class _ModulesByReference(_dill_pickler()):  # type: ignore[misc]
    dispatch = _dill_pickler().dispatch.copy()
    dispatch[types.ModuleType] = _save_module


_DILL_SAVE_MODULE = _dill_pickler().dispatch[types.ModuleType]


def add_paths(paths: list[str]) -> None:
    """Put the parent's own code directories that exist here at the front of ``sys.path``."""
    for path in reversed(paths):
        if os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)


def unpicklable(loader: Callable[..., Any], exc: BaseException, where: str) -> TypeError:
    """The one error a loader that cannot travel gets, on every backend."""
    return TypeError(f"loader must be picklable to run in {where}; pickling {loader!r:.80} failed with "
                     f"{type(exc).__name__}: {exc}. Build what cannot be pickled (open files, sockets, "
                     "locks, clients) inside the loader, on first use, or use backend='thread'.")
