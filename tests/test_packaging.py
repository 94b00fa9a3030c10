"""What a user installs: metadata, dependencies, extras, and the core working without the extras.

``make core`` also runs this file against the built wheel in venvs that hold only the core
dependencies (Python 3.10 and 3.13); there it checks the installed distribution.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = {"numpy", "multiprocess", "dill", "tblib", "threadpoolctl"}


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return cfg


def _requirements(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def test_core_requires_only_what_the_core_imports():
    cfg = _setup_cfg()
    required = {_name(r) for r in _requirements(cfg["options"]["install_requires"])}
    assert required == CORE
    # Every module the core can use without an extra, the CLI's bench included, and the modules
    # whose extra is imported only when used (awkgen.images: Pillow): the third-party packages
    # they import are the core requirements and nothing else (no tqdm, no framework, no Pillow).
    code = ("import sys, json, awkgen, awkgen.bench, awkgen.sampling, awkgen.transport, awkgen.distributed, "
            "awkgen.executors.process, awkgen.executors.thread, awkgen.executors.ray, awkgen.frameworks, "
            "awkgen.images, awkgen.classes; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    third_party = {m for m in loaded if m not in sys.stdlib_module_names and not m.startswith("_")} - {"awkgen"}
    assert third_party <= CORE, f"the core imports {sorted(third_party - CORE)}"
    assert {"numpy", "multiprocess", "dill"} <= third_party


def test_extras_state_lower_bounds_never_exact_pins():
    extras = _setup_cfg()["options.extras_require"]
    assert {"keras", "tensorflow", "torch", "jax", "ray", "art", "images", "mxnet", "demo", "bench", "test",
            "all"} <= set(extras)
    for extra, text in extras.items():
        for requirement in _requirements(text):
            assert "==" not in requirement and "~=" not in requirement, f"[{extra}] pins {requirement}"
            assert ">=" in requirement, f"[{extra}] {requirement} states no lower bound"
            if "<" in requirement.replace("<=", ">="):  # an upper bound: only MXNet's numpy needs one
                assert (extra, _name(requirement)) == ("mxnet", "numpy"), f"[{extra}] caps {requirement}"
    # A user's own GPU build satisfies the frameworks' extras: torch, and TensorFlow by its usual name.
    assert _requirements(extras["torch"]) == ["torch>=2.0"]
    assert _requirements(extras["tensorflow"]) == ["tensorflow>=2.16"]
    for extra in ("demo", "bench", "test", "all"):
        assert "tqdm" in {_name(r) for r in _requirements(extras[extra])}, extra
    for extra in ("images", "demo", "test", "all"):
        assert "pillow" in {_name(r) for r in _requirements(extras[extra])}, extra


def test_installed_metadata_is_complete():
    meta = importlib.metadata.metadata("awkgen")
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = meta.get_all("Classifier")
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], "PEP 639: the expression replaces them"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues"}
    assert not [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r and _name(r) not in CORE]


def test_license_and_build_system_ship_with_the_source():
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Copyright (c) 2026 the awkgen authors" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[build-system]" in pyproject and re.search(r'"setuptools>=\d+', pyproject)


def test_bench_without_tqdm_runs_and_reports_progress_on_stderr(monkeypatch, capsys):
    from awkgen.bench import run_bench

    monkeypatch.setitem(sys.modules, "tqdm", None)  # "import tqdm" now raises ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    rows = run_bench(latency_ms=0, workers=[1], n_batches=3, out=lambda line: None)
    assert [(row.factory, row.n_workers) for row in rows] == [("DataGenerator", 1), ("DataGeneratorMultiProc", 1)]
    assert "awkgen bench: timing DataGeneratorMultiProc(1) (2 of 2)" in capsys.readouterr().err
    rows = run_bench(latency_ms=0, workers=[1], n_batches=3, progress=False, out=lambda line: None)
    assert len(rows) == 2 and "timing" not in capsys.readouterr().err


class _NoNotes(Exception):
    add_note = None  # as on Python 3.10, where exceptions have no add_note


@pytest.mark.parametrize("exc_type", [ValueError, _NoNotes])
def test_a_ray_worker_traceback_shows_on_every_python(exc_type):
    from awkgen.executors.ray import _add_note

    exc = exc_type("bad record")
    _add_note(exc, "worker-side traceback (Ray actor, pid 7):\n  File loader.py, line 3")
    assert exc.__notes__[-1].startswith("worker-side traceback (Ray actor, pid 7)")
    printed = "".join(traceback.format_exception(exc))
    assert "worker-side traceback (Ray actor, pid 7)" in printed and "File loader.py, line 3" in printed
    assert f"{exc_type.__name__}: bad record" in printed
    if sys.version_info < (3, 11) or exc_type is _NoNotes:  # no notes: the text is the printed cause
        assert "worker-side traceback" in str(exc.__cause__)
