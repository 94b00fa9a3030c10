"""The benchmark harness (not its speed): planning, interleaving, peers' configurations, targets, the report.

No timing is asserted here (the machine may be busy); ``make bench`` measures. The one
slow test runs a quick pass over one cheap scenario and checks every contender's row.
"""

from __future__ import annotations

import doctest
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
    assert all(r["steal"] is None or 0 <= r["steal"] <= 1 for r in rows.values())
    assert not results["leaks"], results["leaks"]
    assert set(results["configs"]) == set(CONTENDERS)
    markdown = (out / "results.md").read_text()
    for name in CONTENDERS:
        assert f"| {name} |" in markdown
    for family in ("keras", "torch", "tf.data", "grain"):
        assert f"| {family} (best) |" in markdown
    assert (out / "results.png").stat().st_size > 0
    assert any(t["target"] == "tiny batches vs best peer" for t in results["targets"])


@pytest.mark.slow
@pytest.mark.parametrize("contender", ["awkgen-process", "torch[manual]", "torch[auto]"])
def test_path_ids_child_runs_one_epoch_and_measures_the_tree(contender):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.pathids", "--contender", contender, "--n", "3000",
                           "--workers", "2", "--batch-size", "256"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["batches"] == 12  # ceil(3000 / 256): one whole epoch, the last batch short
    assert record["peak_pss_mib"] >= record["base_pss_mib"] > 0


def test_harness_doctests():
    import benchmarks.contenders
    import benchmarks.loaders
    import benchmarks.proctree
    import benchmarks.report
    import benchmarks.scenarios

    for module in (benchmarks.loaders, benchmarks.contenders, benchmarks.scenarios, benchmarks.report,
                   benchmarks.proctree):
        failed, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert failed == 0, module.__name__


def test_every_peer_runs_in_each_documented_configuration():
    from benchmarks.contenders import CONTENDERS, FAMILIES, PEERS, make_contenders

    assert FAMILIES == {"keras": ("keras[threads]", "keras[processes]"),
                        "torch": ("torch[manual]", "torch[auto]"),
                        "tf.data": ("tf.data[autotune]", "tf.data[fixed]"),
                        "grain": ("grain[threads]", "grain[processes]")}
    assert set(PEERS) == set(CONTENDERS) - {"awkgen-blocking", "awkgen-thread", "awkgen-process"}
    built = {c.name: c for c in make_contenders()}
    assert not built["keras[threads]"].processes and built["keras[processes]"].processes
    assert built["tf.data[autotune]"].autotune and not built["tf.data[fixed]"].autotune
    assert built["torch[auto]"].automatic and not built["torch[manual]"].automatic
    assert all(c.config and c.family for c in built.values())


@pytest.mark.slow  # imports torch
def test_torch_batch_dataset_loads_each_batch_with_one_loader_call_both_ways():
    from torch.utils.data import BatchSampler, SequentialSampler

    from benchmarks.contenders import _torch_dataset_class
    from benchmarks.loaders import BatchAt, as_float

    dataset = _torch_dataset_class()(BatchAt(as_float, __import__("numpy").arange(6), 2), 3)
    batches = list(BatchSampler(SequentialSampler(range(len(dataset))), 2, drop_last=False))
    assert batches == [[0, 1], [2, 3], [4, 5]]
    assert [dataset[b].tolist() for b in batches] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert dataset.__getitems__([2, 3]).tolist() == [2.0, 3.0]


def test_all_scenarios_interleave_in_rotated_rounds_references_first():
    from benchmarks.contenders import make_contenders
    from benchmarks.scenarios import EMPTY_ROW, Settings, plan_jobs

    settings = Settings.make(quick=False)
    assert settings.rounds == 3
    contenders = make_contenders(["awkgen-process", "tf.data[autotune]", "grain[threads]"])
    jobs = plan_jobs(["tiny", "bandwidth", "coldstart"], settings, contenders, {})
    by_round = [[j for j in jobs if j.round == n] for n in range(3)]
    assert [len(r) for r in by_round] == [12, 12, 12] and len(jobs) == 36
    order = [[j.scenario for j in r if not j.reference][::3] for r in by_round]
    assert order == [["tiny", "bandwidth", "coldstart"], ["bandwidth", "coldstart", "tiny"],
                     ["coldstart", "tiny", "bandwidth"]]
    tiny = [[j.contender for j in r if j.scenario == "tiny"] for r in by_round]
    assert tiny == [["awkgen-process", "tf.data[autotune]", "grain[threads]"],
                    ["tf.data[autotune]", "grain[threads]", "awkgen-process"],
                    ["grain[threads]", "awkgen-process", "tf.data[autotune]"]]
    for r in by_round:  # the same round's references (and the awkgen.empty row) open the bandwidth scenario
        bandwidth = [j for j in r if j.scenario == "bandwidth"]
        assert [j.contender for j in bandwidth[:3]] == ["memcpy limit", "serial loader", EMPTY_ROW]
        assert all(j.reference for j in bandwidth[:3]) and not any(j.reference for j in bandwidth[3:])
    assert "(round 2)" in by_round[1][0].label
    quick = plan_jobs(["tiny"], Settings.make(quick=True), contenders, {})
    assert [j.round for j in quick] == [None] * 3


def test_merge_rounds_keeps_the_median_round_its_spread_and_failed_rounds():
    from benchmarks.scenarios import merge_rounds

    values = {"a": [9.0, 1.0, 8.0], "b": [2.0, 3.0, None], "c": [None, None, None]}
    records = [{"scenario": "tiny", "contender": c, "workers": 2, "round": n, "value": v, "steal": 0.01 * n,
                **({"error": "RuntimeError: boom"} if v is None else {})}
               for n in range(3) for c, vs in values.items() for v in [vs[n]]]
    merged = {r["contender"]: r for r in merge_rounds(records)}
    assert list(merged) == ["a", "b", "c"]
    assert merged["a"]["value"] == 8.0 and merged["a"]["rounds"] == [9.0, 1.0, 8.0]
    assert merged["a"]["spread"] == [1.0, 9.0] and merged["a"]["steal_max"] == 0.02
    assert merged["b"]["value"] == 2.0 and "error" not in merged["b"]
    assert merged["b"]["failed_rounds"] == ["RuntimeError: boom"]
    assert merged["c"]["value"] is None and merged["c"]["error"] and merged["c"]["round"] is None


def _records():
    def r(scenario, contender, value, workers=2, **extra):
        return {"scenario": scenario, "contender": contender, "workers": workers, "reference": False,
                "value": value, **extra}

    return [
        r("tiny", "awkgen-process", 30_000.0), r("tiny", "keras[threads]", 12_000.0),
        r("tiny", "keras[processes]", 1_600.0), r("tiny", "grain[threads]", 9_000.0),
        {**r("bandwidth", "serial loader", 200.0, workers=None), "reference": True},
        {**r("bandwidth", "memcpy limit", 250.0, workers=None), "reference": True},
        r("bandwidth", "awkgen-process", 210.0, gib_per_s=6.6), r("bandwidth", "keras[threads]", 150.0, gib_per_s=4.7),
        r("bandwidth", "torch[manual]", 30.0, gib_per_s=0.9),
        r("latency", "awkgen-process", 390.0, workers=8, of_ideal=0.975),
        r("latency", "awkgen-process", 1400.0, workers=32, of_ideal=0.875),
        r("decode", "awkgen-process", 90.0, of_ideal=0.9, ideal=100.0),
        r("coldstart", "awkgen-process", 0.55, workers=8, of_ideal=0.5 / 0.55, first_batch_s=0.1, first_limit_s=0.32),
        r("coldstart", "keras[threads]", 0.52, workers=8, of_ideal=0.5 / 0.52, first_batch_s=0.03, first_limit_s=0.32),
        r("coldstart", "keras[processes]", 0.9, workers=8, of_ideal=0.5 / 0.9, first_batch_s=0.3, first_limit_s=0.32),
        r("pathids", "awkgen-process", 1800.0, workers=8, peak_pss_mib=240.0),
        r("pathids", "torch[manual]", 380.0, workers=8, peak_pss_mib=1180.0),
        r("pathids", "torch[auto]", 400.0, workers=8, peak_pss_mib=1100.0),
    ]


def test_targets_compare_with_each_peers_best_configuration():
    from benchmarks.scenarios import best_peer, evaluate_targets

    records = _records()
    assert best_peer(records, "tiny")["contender"] == "keras[threads]"
    assert best_peer(records, "coldstart")["contender"] == "keras[threads]"  # seconds: the smaller wins
    targets = {(t["target"], t["contender"]): t for t in evaluate_targets(records)}
    tiny = targets["tiny batches vs best peer", "awkgen-process"]
    assert tiny["measured"] == pytest.approx(2.5) and not tiny["passed"] and "keras[threads]" in tiny["how"]
    vs_serial = targets["bandwidth vs serial loader", "awkgen-process"]
    assert vs_serial["measured"] == pytest.approx(1.05) and vs_serial["passed"]
    vs_peer = targets["bandwidth vs best peer", "awkgen-process"]
    assert vs_peer["measured"] == pytest.approx(1.4) and not vs_peer["passed"]
    assert targets["bandwidth vs memcpy limit (reported)", "awkgen-process"]["measured"] == pytest.approx(0.84)
    assert targets["latency-bound, 8 workers", "awkgen-process"]["passed"]
    assert not targets["latency-bound, 32 workers", "awkgen-process"]["passed"]
    assert not targets["real decode vs cores x serial", "awkgen-process"]["passed"]
    assert not targets["cold start, 200 batches", "awkgen-process"]["passed"]
    first = targets["time to first batch", "awkgen-process"]
    assert first["passed"] and first["cmp"] == "<="
    pss = targets["path ids: whole-tree PSS vs torch", "awkgen-process"]
    assert pss["measured"] == pytest.approx(240 / 1100) and pss["passed"] and "torch[auto]" in pss["how"]
    speed = targets["path ids: throughput vs torch", "awkgen-process"]
    assert speed["measured"] == pytest.approx(4.5) and speed["passed"]


def test_report_names_each_peers_best_configuration():
    from benchmarks import report
    from benchmarks.scenarios import evaluate_targets

    records = _records()
    results = {
        "machine": {"nproc": 2, "cpu_model": "test CPU", "ram_gib": 1.0, "kernel": "6", "python": "3.11",
                    "date": "today", "loadavg_at_start": [0.1, 0.1, 0.1], "cpu_steal": 0.012},
        "versions": {"numpy": "2"}, "settings": {"quick": False, "rounds": 3}, "caveat": "busy",
        "contenders": ["awkgen-process", "keras[threads]", "keras[processes]", "torch[manual]", "torch[auto]",
                       "grain[threads]"],
        "configs": {"keras[threads]": "PyDataset(use_multiprocessing=False)"},
        "scenarios": {"tiny": {"title": "4. Tiny", "what": "1 KiB", "unit": "batches/s"}},
        "records": records, "targets": evaluate_targets(records), "leaks": [], "wall_s": 1.0,
    }
    text = report.markdown(results)
    assert "| keras (best) | " in text
    keras_row = next(line for line in text.splitlines() if line.startswith("| keras (best) |"))
    assert "12,000 [threads]" in keras_row and "0.52 (0.03) [threads]" in keras_row
    torch_row = next(line for line in text.splitlines() if line.startswith("| torch (best) |"))
    assert "400, 1,100 MiB [auto]" in torch_row
    assert "| keras[processes] | " in text and "`keras[threads]`: `PyDataset(use_multiprocessing=False)`" in text
    assert "| tiny batches vs best peer | awkgen-process | 2.5 | >= 3 | **FAIL** |" in text
    assert "| path ids: whole-tree PSS vs torch | awkgen-process | 0.218 | <= 0.5 | PASS |" in text
    assert "CPU steal during the run 1.2%" in text and "**Caveat:** busy" in text
    table = report.rst_table(results).splitlines()
    assert table[0] == table[2] == table[-1] and set(table[0]) == {"=", " "}
    assert table[1].split()[:2] == ["contender", "latency"]
    assert next(line for line in table if line.startswith("keras (best)")).count("[threads]") >= 2
    # report.write (and its matplotlib plot) runs in the slow end-to-end test, in a child process


def test_jpegs_are_written_once_deterministically(tmp_path):
    from benchmarks.loaders import JpegLoader, make_jpegs

    folder = str(tmp_path / "jpeg")
    make_jpegs(folder, n=3, size=(32, 24))
    first = {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}
    assert sorted(first) == ["00000.jpg", "00001.jpg", "00002.jpg", "MANIFEST"]
    stamp = os.stat(os.path.join(folder, "00001.jpg")).st_mtime_ns
    make_jpegs(folder, n=3, size=(32, 24))  # the manifest matches: nothing rewritten
    assert os.stat(os.path.join(folder, "00001.jpg")).st_mtime_ns == stamp
    other = str(tmp_path / "again")
    make_jpegs(other, n=3, size=(32, 24))
    assert all(open(os.path.join(other, name), "rb").read() == data for name, data in first.items())
    batch = JpegLoader(folder, 3, size=(16, 8))(__import__("numpy").array([0, 4]))  # 4 wraps around to 1
    assert batch.shape == (2, 8, 16, 3) and batch.dtype.name == "float32" and batch.max() > 0


def test_the_decode_scenarios_loader_is_the_pillow_work_of_the_hand_written_one(tmp_path):
    """Every contender runs ImageBatchLoader (awkgen.images.load_image_batch): the same Pillow
    decode and resize as the hand-written JpegLoader, the same pixels, divided by 255."""
    import numpy as np

    from benchmarks.loaders import ImageBatchLoader, JpegLoader, make_jpegs

    folder = make_jpegs(str(tmp_path / "jpeg"), n=3, size=(40, 30))
    ids = np.array([0, 4, 2])
    ours, theirs = ImageBatchLoader(folder, 3, size=(16, 16))(ids), JpegLoader(folder, 3, size=(16, 16))(ids)
    assert ours.shape == theirs.shape == (3, 16, 16, 3) and ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs / np.float32(255))


def test_first_call_pause_pauses_once_per_process():
    import time

    import numpy as np

    from benchmarks.loaders import FirstCallPause, as_float

    loader = FirstCallPause(as_float, 0.3)
    started = time.perf_counter()
    loader(np.arange(2))
    first = time.perf_counter() - started
    started = time.perf_counter()
    loader(np.arange(2))
    assert first >= 0.3 > time.perf_counter() - started


# -- scenario 10: a billion ids (benchmarks/bigids.py) -------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("contender", ["awkgen-blocking", "awkgen-process", "grain"])
def test_bigids_child_measures_construction_first_batch_and_memory(contender):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bigids", "--case", "range", "--contender", contender,
                           "--n", str(10**9), "--batches", "20", "--budget-s", "5"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["contender"] == contender and record["ids"] == 10**9 and record["batches"] == 20
    assert 0 <= record["construction_s"] <= record["first_batch_s"]
    assert record["base_anon_mib"] > 0 and record["anon_growth_mib"] > -record["base_anon_mib"]


@pytest.mark.slow
def test_bigids_child_skips_torch_where_its_sampler_would_not_fit_and_times_each_order():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bigids", "--case", "range", "--contender", "torch",
                           "--n", str(10**12)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["skipped"].startswith("not run: RandomSampler")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bigids", "--case", "order", "--n", "70000",
                           "--batch-size", "256", "--method", "awkgen", "--method", "awkgen before (numpy permutation)",
                           "--method", "torch"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert [r["contender"] for r in records] == ["awkgen", "awkgen before (numpy permutation)", "torch"]
    assert all(r["whole_epoch"] and r["batches"] == 274 and r["us_per_batch"] > 0 for r in records)


def test_bigids_plans_rows_for_the_contenders_asked_for():
    from benchmarks.contenders import make_contenders
    from benchmarks.scenarios import Settings, plan_jobs

    jobs = plan_jobs(["bigids"], Settings.make(quick=True), make_contenders(["awkgen-process", "grain[threads]"]), {})
    assert [j.contender for j in jobs] == [
        "awkgen-process, range 10^9", "grain, range 10^9", "awkgen-process, memmap 10^8", "grain, memmap 10^8",
        "awkgen, order 10^6 x1", "awkgen before (numpy permutation), order 10^6 x1", "grain, order 10^6 x1",
        "awkgen, order 10^6 x256", "awkgen before (numpy permutation), order 10^6 x256", "grain, order 10^6 x256"]
    assert plan_jobs(["bigids"], Settings.make(quick=True), make_contenders(["keras[threads]"]), {}) == []


def test_bigids_targets_and_report():
    from benchmarks import report
    from benchmarks.scenarios import evaluate_targets

    def r(contender, **fields):
        return {"scenario": "bigids", "contender": contender, "workers": None, "reference": False, **fields}

    records = [
        r("awkgen-process, range 10^9", case="range", value=78.0, construction_s=0.05, first_batch_s=0.5,
          batches=10_000, batches_per_s=6000.0, anon_growth_mib=78.0),
        r("torch, range 10^9", case="range", value=None, skipped="not run: RandomSampler's first batch ..."),
        r("awkgen-process, memmap 10^8", case="memmap", value=250.0, construction_s=1.5, first_batch_s=1.9,
          batches=10_000, batches_per_s=4000.0, anon_growth_mib=250.0),
        r("awkgen, order 10^6 x1", case="order", value=0.7, us_per_batch=0.7),
        r("awkgen before (numpy permutation), order 10^6 x1", case="order", value=0.4, us_per_batch=0.4),
        r("awkgen, order 10^6 x256", case="order", value=9.0, us_per_batch=9.0),
        r("awkgen before (numpy permutation), order 10^6 x256", case="order", value=5.0, us_per_batch=5.0),
    ]
    targets = {t["target"]: t for t in evaluate_targets(records)}
    assert targets["10^9 range ids: construction"]["passed"] and targets["10^9 range ids: first batch"]["passed"]
    assert targets["10^9 range ids: memory growth"]["threshold"] == pytest.approx(190.7, abs=0.1)
    assert not targets["10^8 memory-mapped ids: construction"]["passed"]
    assert not targets["10^8 memory-mapped ids: memory growth"]["passed"]
    assert targets["order at 10^6 ids, batch 1: cost beyond before"]["measured"] == pytest.approx(0.3)
    assert not targets["order at 10^6 ids, batch 256: cost beyond before"]["passed"]
    lines = report._bigids_lines(records)
    assert "| awkgen-process, range 10^9 | 0.05 | 0.5 | 10,000 (6,000) | 78 | |" in lines
    assert any(line.startswith("| torch, range 10^9 | - |") and "not run" in line for line in lines)
    assert "| awkgen before (numpy permutation), order 10^6 x256 | 5 |" in lines


def test_memory_in_flight_is_what_came_and_went_once_every_process_was_up():
    """A process that grew before the last one started holds its footprint, not memory in flight:
    the sampler compares sweeps that saw the same processes (the sum of each one's own minimum,
    ``extra_by_process``, counts that growth too)."""
    from benchmarks.proctree import MemorySampler

    mib = 2**20
    # Each child says where it is; the sleeps between steps give the sampler's sweeps time to see each state.
    grown = ("import sys, time; time.sleep(0.5); footprint = b'x' * (40 << 20); print('grown', flush=True); "
             "time.sleep(60)")
    in_flight = ("import sys, time; time.sleep(0.8); batch = b'x' * (24 << 20); print('holding', flush=True); "
                 "time.sleep(0.5); del batch; print('freed', flush=True); time.sleep(60)")
    sampler = MemorySampler(interval_s=0.02).start()
    children = []
    try:
        children.append(subprocess.Popen([sys.executable, "-S", "-c", grown], stdout=subprocess.PIPE, text=True))
        assert children[0].stdout.readline().strip() == "grown"
        children.append(subprocess.Popen([sys.executable, "-S", "-c", in_flight], stdout=subprocess.PIPE,
                                         text=True))
        assert [children[1].stdout.readline().strip() for _ in range(2)] == ["holding", "freed"]
        sampler.stop()
    finally:
        for child in children:
            child.kill()
            child.wait()
            child.stdout.close()
    # the 24 MiB held, and at most the second child's own start (a bare interpreter: -S)
    assert 22 * mib <= sampler.extra <= 30 * mib, sampler.extra / mib  # 24.0 MiB here
    assert sampler.extra_by_process >= sampler.extra + 30 * mib, sampler.extra_by_process / mib
