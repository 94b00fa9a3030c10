"""The API reference's sources: every public name's docstring says what it takes, returns and raises.

``make docs`` renders these docstrings (docs/) with warnings as errors and runs their doctests;
this checks that the sections are there at all, and that the guide (README and docs/) documents the
public classes.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import awkgen
import awkgen.classes
import awkgen.images

_ROOT = Path(__file__).resolve().parents[1]
README = "\n".join(path.read_text(encoding="utf-8")
                   for path in [_ROOT / "README.rst", *sorted((_ROOT / "docs").glob("*.rst"))])
FUNCTIONS = [(awkgen, name) for name in ("DataGenerator", "DataGeneratorNonblock", "DataGeneratorMultiProc",
                                         "CleanupGenerator", "shard_from_env", "empty")]
FUNCTIONS += [(module, name) for module in (awkgen.images, awkgen.classes) for name in module.__all__]
# BatchGenerator's methods and the sections each docstring must have.
METHODS = {
    "__call__": ("Args:", "Returns:", "Raises:"),
    "get_batch": ("Returns:", "Raises:"),
    "state_dict": ("Returns:",),
    "load_state_dict": ("Args:", "Raises:"),
    "stats": ("Returns:",),
    "as_keras": ("Returns:", "Raises:"),
    "as_torch": ("Returns:", "Raises:"),
    "as_tf": ("Returns:", "Raises:"),
}


def test_every_exported_name_is_documented():
    for name in awkgen.__all__:
        if name != "__version__":
            assert inspect.getdoc(getattr(awkgen, name)), f"awkgen.{name} has no docstring"


@pytest.mark.parametrize(("module", "name"), FUNCTIONS, ids=[f"{m.__name__}.{n}" for m, n in FUNCTIONS])
def test_functions_give_parameters_returns_and_raises(module, name):
    function = getattr(module, name)
    doc = inspect.getdoc(function)
    for section in ("Args:", "Returns:", "Raises:"):
        assert f"\n{section}\n" in doc, f"{module.__name__}.{name}'s docstring has no {section} section"
    documented = "\n" + doc.split("\nArgs:\n", 1)[1].split("\nReturns:\n", 1)[0]
    for parameter in inspect.signature(function).parameters.values():
        shown = f"**{parameter.name}" if parameter.kind is parameter.VAR_KEYWORD else parameter.name
        assert f"\n    {shown}:" in documented, f"{module.__name__}.{name} does not document {shown}"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_generator_methods_give_returns_and_raises(method):
    doc = inspect.getdoc(getattr(awkgen.BatchGenerator, method))
    for section in METHODS[method]:
        assert f"\n{section}\n" in doc, f"BatchGenerator.{method} has no {section} section"


def test_properties_and_stats_fields_are_documented():
    for name in ("size", "batch_size", "iterator", "steps_per_epoch", "epoch", "step", "seed", "closed",
                 "n_workers", "backend"):
        assert getattr(awkgen.BatchGenerator, name).__doc__, f"BatchGenerator.{name} has no docstring"
    doc = inspect.getdoc(awkgen.GeneratorStats)
    for field in ("batches", "loader_s", "wait_s", "elapsed_s", "ready", "in_flight", "n_workers", "verdict"):
        assert f"\n    {field}:" in doc, f"GeneratorStats does not document {field}"


def test_errors_say_when_they_are_raised():
    for name in ("LoaderError", "WorkerDiedError", "LoaderTimeoutError", "WorkerStartError", "GeneratorStoppedError"):
        assert "raise" in inspect.getdoc(getattr(awkgen, name)).lower(), f"awkgen.{name} does not say when"


def test_readme_documents_the_public_classes():
    for name in ("GeneratorStoppedError", "BatchGenerator", "GeneratorStats"):
        assert f"awkgen.{name}" in README, f"README never documents awkgen.{name}"
    assert "make docs" in README
