"""The ``awkgen`` command line: help for every subcommand, argument checks, a real bench run."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from awkgen.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m awkgen ARGS`` in a child interpreter that sees this checkout; waits for it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "awkgen", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, expected", [
    (["--help"], ["demo", "bench"]),
    (["demo", "--help"], ["--epochs", "--workers", "--latency-ms", "--cache", "--holdout"]),
    (["bench", "--help"], ["--quick", "--workers", "--latency-ms", "--batches", "--backend"]),
])
def test_help_names_every_option(args, expected):
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    for word in expected:
        assert word in done.stdout


def test_no_subcommand_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["bench", "--workers", "0"], "positive integers"),
    (["bench", "--workers", "two"], "positive integers"),
    (["bench", "--latency-ms", "-1"], "number >= 0"),
    (["demo", "--holdout", "1.5"], "fraction between 0 and 1"),
    (["demo", "--epochs", "0"], "positive integer"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_naming_the_problem(args, message, capsys):
    with pytest.raises(SystemExit) as raised:
        main(args)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def _table(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if re.match(r"DataGenerator(MultiProc)?\s", line)]


def test_bench_quick_prints_a_table_where_workers_beat_blocking():
    done = run_cli("bench", "--quick", "--batches", "20", "--latency-ms", "2", "--no-progress")
    assert done.returncode == 0, done.stderr
    rows = _table(done.stdout)
    assert [(row[0], int(row[2])) for row in rows] == [
        ("DataGenerator", 1), ("DataGeneratorMultiProc", 1), ("DataGeneratorMultiProc", 2),
        ("DataGeneratorMultiProc", 4)]
    rates = [float(row[3]) for row in rows]
    # The loader sleeps 64 ms per batch: four workers overlap their waits, whatever the CPU load.
    assert rates[3] > 1.8 * rates[0], done.stdout


def test_bench_in_process_with_the_thread_backend(capsys):
    assert main(["bench", "--workers", "1,3", "--batches", "5", "--latency-ms", "0", "--backend", "thread",
                 "--no-progress"]) == 0
    rows = _table(capsys.readouterr().out)
    assert [(row[1], int(row[2])) for row in rows] == [("serial", 1), ("thread", 1), ("thread", 3)]


def test_impossible_option_combinations_exit_2_with_the_factory_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AWKGEN_CACHE", str(tmp_path))
    assert main(["demo", "--batch-size", "5000", "--no-progress"]) == 2  # fails before Keras or workers start
    err = capsys.readouterr().err
    assert err.startswith("awkgen demo: error: batch_size must be at most the number of ids"), err
    assert main(["bench", "--batch-size", "5000", "--no-progress"]) == 2
    assert "batch_size" in capsys.readouterr().err


def test_the_command_and_its_modules_import_no_framework():
    code = ("import sys, awkgen.__main__, awkgen.demo, awkgen.bench; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'jax', 'sklearn') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_bench_without_tqdm_shows_a_line_per_row_on_stderr():
    """tqdm is not a dependency: without it (an ImportError here), bench still runs, with plain progress."""
    code = ("import sys; sys.modules['tqdm'] = sys.modules['tqdm.auto'] = None; "
            "from awkgen.__main__ import main; "
            "sys.exit(main(['bench', '--workers', '1', '--batches', '2', '--latency-ms', '0', '--backend', 'thread']))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert [row[0] for row in _table(done.stdout)] == ["DataGenerator", "DataGeneratorMultiProc"]
    assert done.stderr.splitlines() == ["awkgen bench: timing DataGenerator (1 of 2)",
                                        "awkgen bench: timing DataGeneratorMultiProc(1) (2 of 2)"], done.stderr
