"""``mypy --strict`` accepts the README's idioms (tests/typecheck/usage.py) and still catches misuse.

``make lint`` checks the same files; this test makes a typing regression fail ``make test``
too, and shows the check has teeth: a wrong idiom is refused with the expected message.
"""

from __future__ import annotations

import json
import os
import shutil
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


# -- pyright, and what a user's type checker sees of the installed awkgen ----------------------

def _pyright(*args: str, cwd: str = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    pyright = shutil.which("pyright", path=os.path.dirname(sys.executable))
    if pyright is None:
        pytest.skip("pyright is not installed (pip install pyright; it is in awkgen[test])")
    return subprocess.run([pyright, "--pythonpath", sys.executable, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=280, env=env)


def test_pyright_accepts_the_readme_idioms():
    result = _pyright("--outputjson", USAGE)
    report = json.loads(result.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert not errors, "\n".join(f"{d['range']['start']['line'] + 1}: {d['message']}" for d in errors)


def test_len_of_as_torch_and_of_the_generator_type_check(tmp_path):
    user = tmp_path / "loop.py"
    user.write_text(
        "import awkgen\n"
        "gen = awkgen.DataGenerator(lambda ids: ids, [1, 2, 3], batch_size=2)\n"
        "reveal_type(len(gen.as_torch()))\n"
        "reveal_type(len(gen))\n"
        "reveal_type(gen.one_epoch())\n")
    checked = _mypy(str(user))
    assert checked.stdout.count('Revealed type is "int"') == 2, checked.stdout
    assert 'Revealed type is "awkgen.generator.EpochPass"' in checked.stdout, checked.stdout
    seen = _pyright(str(user), cwd=ROOT)
    assert seen.stdout.count('is "int"') == 2 and '"EpochPass"' in seen.stdout, seen.stdout
    assert "0 errors" in seen.stdout, seen.stdout


# What pyright cannot know is as_torch()'s TorchStream: a subclass of torch's IterableDataset, which
# --verifytypes cannot see into, so the classes and functions that mention BatchGenerator count too.
def test_pyright_verifytypes_finds_the_public_api_typed():
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = _pyright("--verifytypes", "awkgen", "--ignoreexternal", "--outputjson", env=env)
    score = json.loads(result.stdout)["typeCompleteness"]["completenessScore"]
    assert score >= 0.95, f"pyright --verifytypes awkgen: {score:.1%}"


def test_the_installed_awkgen_is_visible_to_type_checkers(tmp_path):
    """From a folder outside the checkout (as a user's project), mypy and pyright find the awkgen
    this environment installed: with an editable install, only if it is a path in a .pth file
    (the Makefile installs it with editable_mode=compat), not setuptools' import hook."""
    user = tmp_path / "project.py"
    user.write_text("import awkgen\nreveal_type(awkgen.DataGenerator(lambda ids: ids, [1, 2], batch_size=1))\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MYPYPATH")}
    checked = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--strict", str(user)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=280, env=env)
    assert 'Revealed type is "awkgen.generator.BatchGenerator"' in checked.stdout and checked.returncode == 0, (
        "mypy cannot see the installed awkgen (rebuild .venv with `make`: editable_mode=compat)\n" + checked.stdout)
    seen = _pyright(str(user), cwd=str(tmp_path), env=env)
    assert 'is "BatchGenerator"' in seen.stdout and "0 errors" in seen.stdout, seen.stdout
