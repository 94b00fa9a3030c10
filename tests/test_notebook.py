"""``notebooks/quickstart.ipynb`` runs top to bottom (its own asserts included) and is stored clean.

It runs under ``pytest --nbmake`` in a child interpreter: its kernel imports
TensorFlow, whose threads and sockets must not count against this process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = [os.path.join(ROOT, "notebooks", "quickstart.ipynb")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_stored_without_outputs(path):
    with open(path, encoding="utf-8") as f:
        notebook = json.load(f)
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "a notebook without code cells"
    dirty = [i for i, cell in enumerate(code) if cell.get("outputs") or cell.get("execution_count") is not None]
    assert not dirty, f"code cells {dirty} carry outputs: clear them before committing (Kernel > Restart & Clear)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_uses_the_public_api_and_says_what_it_holds(path):
    with open(path, encoding="utf-8") as f:
        notebook = json.load(f)
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    assert "awkgen.demo" not in code, "the notebook imports the demo's internals"
    intro = "".join(notebook["cells"][0]["source"])
    assert not re.search(r"\b(ten|\d+) cells\b", intro), "the introduction counts cells: it goes stale"
    assert 'pip install "awkgen[notebook]"' in intro


def _tree(folder):
    return {os.path.join(root, name) for root, dirs, files in os.walk(folder) for name in files + dirs
            if ".git" not in root.split(os.sep) and "__pycache__" not in root}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom_and_writes_nothing_where_it_runs(path, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
           "AWKGEN_CACHE": str(tmp_path), "MPLBACKEND": "Agg"}
    before = _tree(os.path.dirname(path))
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=240", "-q",
                           "-p", "no:cacheprovider", "-o", "addopts=", path],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
    assert _tree(os.path.dirname(path)) == before, "the notebook wrote files next to itself"
    assert os.listdir(tmp_path) == ["awkgen-notebook-digits"]  # its files went to $AWKGEN_CACHE
