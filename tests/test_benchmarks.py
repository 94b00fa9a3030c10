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


def test_tiny_batches_are_measured_in_interleaved_rotated_rounds_and_the_median_round_counts():
    from benchmarks.contenders import make_contenders
    from benchmarks.scenarios import Settings, merge_rounds, plan_tiny

    contenders = make_contenders(["awkgen-process", "tf.data", "grain"])
    jobs = plan_tiny(Settings.make(quick=False), contenders, {})
    rounds = [[j.contender for j in jobs if j.round == n] for n in range(3)]
    assert rounds == [["awkgen-process", "tf.data", "grain"], ["tf.data", "grain", "awkgen-process"],
                      ["grain", "awkgen-process", "tf.data"]]
    assert [j.contender for j in jobs][:3] == rounds[0] and "(round 2)" in jobs[3].label
    values = {"awkgen-process": [9.0, 1.0, 8.0], "tf.data": [2.0, 3.0, None], "grain": [None, None, None]}
    records = [{"scenario": "tiny", "contender": j.contender, "workers": j.workers, "round": j.round,
                "value": values[j.contender][j.round]} for j in jobs]
    merged = {r["contender"]: r for r in merge_rounds(records)}
    assert merged["awkgen-process"]["value"] == 8.0 and merged["awkgen-process"]["rounds"] == [9.0, 1.0, 8.0]
    assert merged["tf.data"]["value"] == 2.0  # a failed round does not count
    assert merged["grain"]["value"] is None and merged["grain"]["round"] is None
