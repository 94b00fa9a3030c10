"""What the interleaved A/B scripts share (``ab_codec``, ``ab_coldstart``): running a child script
against one awkgen tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def run_in_tree(tree: str, script: str, timeout: float, env: dict[str, str] | None = None) -> Any:
    """Run *script* (``python -c``) with *tree* first on ``PYTHONPATH`` and its working directory,
    and *env* added to the environment; return the JSON its last stdout line holds. Exits with
    the child's stderr if it failed."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": tree}
    done = subprocess.run([sys.executable, "-c", script], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])
