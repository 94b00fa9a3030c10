"""``notebooks/quickstart.ipynb`` runs top to bottom (its own asserts included) and is stored clean.

It runs under ``pytest --nbmake`` in a child interpreter: its kernel imports
TensorFlow, whose threads and sockets must not count against this process.
"""

from __future__ import annotations

import json
import os
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


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
           "AWKGEN_CACHE": str(tmp_path), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=240", "-q",
                           "-p", "no:cacheprovider", "-o", "addopts=", path],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
