"""``mypy --strict`` accepts the README's idioms (tests/typecheck/usage.py) and still catches misuse.

``make lint`` checks the same files; this test makes a typing regression fail ``make test``
too, and shows the check has teeth: a wrong idiom is refused with the expected message.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USAGE = os.path.join(ROOT, "tests", "typecheck", "usage.py")

pytestmark = pytest.mark.slow


def _mypy(*paths: str) -> subprocess.CompletedProcess[str]:
    # The project's [mypy] section (strict = True) applies; files named here replace its `files`.
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", os.path.join(ROOT, "setup.cfg"),
                           "--no-error-summary", *paths],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)


def test_readme_idioms_type_check_under_strict():
    result = _mypy(USAGE)
    own = [line for line in result.stdout.splitlines() if line.startswith("tests/")]
    assert not own, "mypy --strict refuses the README's idioms:\n" + "\n".join(own)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_refuses_misuse(tmp_path):
    bad = tmp_path / "misuse.py"
    bad.write_text(
        "import awkgen\n"
        "gen = awkgen.DataGenerator(lambda ids: ids, [1, 2, 3], batch_size=2)\n"
        "x, y = gen(stop=True)\n"          # stop=True returns None
        "awkgen.DataGenerator(lambda ids: ids, [1, 2], batch_size='2')\n"  # arguments keep their types
        "isinstance(gen, awkgen.DataGenerator)\n"  # a factory, not a class
    )
    result = _mypy(str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert 'misuse.py:3: error: "None" object is not iterable' in out, out
    assert "misuse.py:4: error: Argument \"batch_size\"" in out, out
    assert "misuse.py:5: error:" in out and "isinstance" in out, out
