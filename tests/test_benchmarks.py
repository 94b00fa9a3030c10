"""The benchmark suite still runs: a quick pass over one cheap scenario writes every contender's row.

No timing is asserted here (the machine may be busy); ``make bench`` measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quick_benchmark_writes_every_contender(tmp_path):
    from benchmarks.contenders import CONTENDERS

    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--scenarios", "tiny",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    rows = {r["contender"]: r for r in results["records"] if r["scenario"] == "tiny"}
    assert set(rows) == set(CONTENDERS)
    failed = {name: r["error"] for name, r in rows.items() if r.get("error")}
    assert not failed, failed
    assert all(r["value"] > 0 for r in rows.values())
    assert not results["leaks"], results["leaks"]
    markdown = (out / "results.md").read_text()
    for name in CONTENDERS:
        assert f"| {name} |" in markdown
    assert (out / "results.png").stat().st_size > 0
    assert any(t["target"] == "tiny batches vs best peer" for t in results["targets"])
