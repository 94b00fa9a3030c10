"""Write a run's results: ``results.json`` (everything), ``results.md`` (tables), ``results.png`` (plot).

The JSON is the source of truth; the Markdown and the plot are derived from it, so
``python -m benchmarks.report benchmarks/results/results.json`` redraws them (``--retarget``
recomputes the derived ratios and the targets first; ``--rst`` prints README's table instead).
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

__all__ = ["write", "markdown", "plot", "rst_table", "family_best"]

#: (scenario, workers or None, header) for the summary tables and the plot's panels.
_SUMMARY_COLUMNS: list[tuple[str, int | None, str]] = [
    ("latency", 8, "latency x8<br>batches/s (of ideal)"),
    ("latency", 32, "latency x32<br>batches/s (of ideal)"),
    ("bandwidth", None, "bandwidth x2<br>batches/s (GiB/s)"),
    ("cpu", None, "CPU-bound<br>batches/s (of ideal)"),
    ("tiny", None, "tiny<br>batches/s"),
    ("decode", None, "JPEG decode<br>batches/s (of cores x serial)"),
    ("coldstart", None, "cold start x8<br>s to 200 batches (first)"),
    ("overlap", None, "fit overlap<br>epoch / max(load, train)"),
    ("memory", None, "memory x2<br>MiB beyond own (batches)"),
    ("pathids", None, "1 M path ids x8<br>batches/s, tree PSS"),
]
_HIGHER = {"latency": True, "bandwidth": True, "cpu": True, "tiny": True, "decode": True, "coldstart": False,
           "overlap": False, "memory": False, "pathids": True}


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _spread(r: dict[str, Any]) -> str:
    """`` ±12%``: half the range of the rounds, relative to the median; empty for one round."""
    sp = r.get("spread")
    if not sp or not r.get("value") or len([v for v in r.get("rounds") or [] if v is not None]) < 2:
        return ""
    return f" ±{50 * (sp[1] - sp[0]) / abs(r['value']):.0f}%"


def _cell(r: dict[str, Any], spread: bool = True) -> str:
    if r.get("error"):
        return "error"
    s = r["scenario"]
    v = r["value"]
    tail = _spread(r) if spread else ""
    if s in ("latency", "cpu", "decode") and r.get("of_ideal") is not None:
        return f"{_num(v)}{tail} ({r['of_ideal']:.0%})"
    if s == "bandwidth":
        return f"{_num(v)}{tail} ({r['gib_per_s']:.2f})"
    if s == "coldstart":
        return f"{v:.2f}{tail} ({r['first_batch_s']:.2f})"
    if s == "overlap":
        return f"{v:.2f}{tail}"
    if s == "memory":
        return f"{v:,.0f}{tail} ({r['extra_batches']:.1f})"
    if s == "pathids":
        return f"{_num(v)}{tail}, {r['peak_pss_mib']:,.0f} MiB"
    return _num(v) + tail


def _find(records: list[dict[str, Any]], scenario: str, contender: str, workers: int | None) -> dict | None:
    for r in records:
        if r["scenario"] == scenario and r["contender"] == contender and (
                workers is None or r["workers"] in (workers, None)):
            return r
    return None


def family_best(records: list[dict[str, Any]], scenario: str, workers: int | None,
                names: list[str]) -> dict[str, Any] | None:
    """The best measured record among the configurations *names* (one peer family) in a column.

    >>> rs = [{"scenario": "tiny", "contender": c, "workers": 2, "value": v}
    ...       for c, v in [("keras[threads]", 9.0), ("keras[processes]", 2.0)]]
    >>> family_best(rs, "tiny", None, ["keras[threads]", "keras[processes]"])["contender"]
    'keras[threads]'
    """
    found = [r for n in names if (r := _find(records, scenario, n, workers)) and r.get("value") is not None]
    if not found:
        return None
    return (max if _HIGHER.get(scenario, True) else min)(found, key=lambda r: r["value"])


def _families(contenders: list[str]) -> dict[str, list[str]]:
    """awkgen's contenders each on their own, peers grouped by library, in report order."""
    out: dict[str, list[str]] = {}
    for name in contenders:
        out.setdefault(name.split("[")[0], []).append(name)
    return out


def _present(records: list[dict[str, Any]]) -> list[tuple[str, int | None, str]]:
    return [(s, w, h) for s, w, h in _SUMMARY_COLUMNS
            if any(r["scenario"] == s and (w is None or r["workers"] == w) for r in records)]


def markdown(results: dict[str, Any]) -> str:
    """The tables of a run, as GitHub-flavoured Markdown."""
    m = results["machine"]
    records = results["records"]
    contenders = results["contenders"]
    configs = results.get("configs") or {}
    rounds = results["settings"].get("rounds", 1)
    steals = [r["steal"] for r in records if r.get("steal") is not None]
    steals += [r["steal_max"] for r in records if r.get("steal_max") is not None]
    loads = [r["loadavg"] for r in records if r.get("loadavg") is not None]
    lines = [
        f"# awkgen comparative benchmark ({'quick' if results['settings']['quick'] else 'full'} run)",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; {m['date']}; load average at start {m['loadavg_at_start']}"
        + (f", during the run {min(loads):.1f} to {max(loads):.1f}" if loads else "")
        + (f"; CPU steal during the run {100 * m['cpu_steal']:.1f}%" if m.get("cpu_steal") is not None else "")
        + (f" (at most {100 * max(steals):.1f}% in one measurement)" if steals else "")
        + ". "
        f"Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}.",
        "",
        f"Every scenario ran in {rounds} interleaved round(s) (scenarios and contenders rotated each round); "
        "each figure is the median round, ±: half the range of the rounds, relative to the median."
        if rounds > 1 else "One round per measurement.",
        "",
    ]
    if results.get("caveat"):
        lines += [f"> **Caveat:** {results['caveat']}", ""]
    present = _present(records)
    families = _families(contenders)
    header = ["| | " + " | ".join(h for _, _, h in present) + " |", "|---|" + "---:|" * len(present)]
    lines += ["## awkgen against each peer at its best", "",
              "Each peer row is that library's best configuration in that column, named in brackets.", ""]
    lines += header
    for fam, names in families.items():
        cells = []
        for s, w, _ in present:
            r = family_best(records, s, w, names)
            label = f" [{r['contender'].split('[', 1)[1][:-1]}]" if r and "[" in r["contender"] else ""
            cells.append(_cell(r) + label if r else ("error" if any(
                (x := _find(records, s, n, w)) and x.get("error") for n in names) else "-"))
        lines.append(f"| {fam if len(names) == 1 else f'{fam} (best)'} | " + " | ".join(cells) + " |")
    lines += ["", "## Every configuration", ""] + header
    for name in contenders:
        cells = []
        for s, w, _ in present:
            r = _find(records, s, name, w)
            cells.append(_cell(r) if r else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    refs = [r for r in records if r["reference"] and r.get("value") is not None]
    if refs:
        lines += ["", "Limits and reference rows measured in the same run (median round): " + "; ".join(
            f"{r['scenario']} {r['contender']}: {_num(r['value'])}{_spread(r)}"
            + (f" batches/s ({r['gib_per_s']:.2f} GiB/s)" if "gib_per_s" in r else "")
            + (f" s per epoch ({r['step_ms']:.1f} ms/step)" if "step_ms" in r else "")
            + (f" batches/s ({r['call_ms']:.1f} ms/call)" if "call_ms" in r else "")
            + (f" batches/s ({r['ms_per_batch']:.1f} ms/batch)" if "ms_per_batch" in r else "")
            for r in refs) + "."]
    lines += _bigids_lines(records)
    if configs:
        lines += ["", "## Configurations", ""]
        lines += [f"- `{name}`: `{configs[name]}`" for name in contenders if name in configs]
    targets = results["targets"]
    if targets:
        lines += ["", "## Targets (awkgen)", "", "| target | contender | measured | threshold | result | unit |",
                  "|---|---|---:|---:|:---:|---|"]
        for t in targets:
            reported = t["target"].endswith("(reported)")
            verdict = "reported" if reported else ("PASS" if t["passed"] else "**FAIL**")
            threshold = "-" if reported else f"{t.get('cmp', '>=')} {_num(t['threshold'])}"
            lines.append(f"| {t['target']} | {t['contender']} | {_num(t['measured'])} | {threshold} "
                         f"| {verdict} | {t['how']} |")
    prof = results.get("profile")
    if prof and not prof.get("error"):
        parts, bw, tiny = prof["bandwidth_parts"], prof["bandwidth_awkgen_process"], prof["tiny_awkgen_process"]
        lines += ["", "## Profile: awkgen-process (python -m benchmarks.profile_costs, after the run)", "",
                  f"- 32 MiB batch, per-batch costs measured alone (median): the loader's fresh `np.full` "
                  f"{parts['fresh_fill_ms']:.1f} ms; copying it into a warm shared-memory slot "
                  f"{parts['copy_to_shm_ms']:.1f} ms (what the process backend adds); the same fill written "
                  f"straight into the warm slot {parts['fill_in_shm_ms']:.1f} ms; the consumer's page touch "
                  f"{parts['touch_ms']:.2f} ms.",
                  f"- bandwidth, 2 workers: {bw['batches_per_s']:,.0f} batches/s; parent "
                  f"{bw['parent_cpu_us_per_batch']:,.0f} us CPU per batch ({bw['parent_cores']:.2f} cores), workers "
                  f"{bw['workers_cpu_us_per_batch']:,.0f} us ({bw['workers_cores']:.2f} cores); loader "
                  f"{bw['loader_ms_per_batch']:.1f} ms per call in the workers.",
                  f"- tiny, {results['machine']['nproc']} workers: {tiny['batches_per_s']:,.0f} batches/s; parent "
                  f"{tiny['parent_cpu_us_per_batch']:,.0f} us CPU per batch ({tiny['parent_cores']:.2f} cores), "
                  f"workers {tiny['workers_cpu_us_per_batch']:,.0f} us ({tiny['workers_cores']:.2f} cores)."]
        floor = prof.get("tiny_floor")
        if floor:
            lines.append(f"- tiny, the floor in one process: the bare loop (loader + touch) "
                         f"{floor['bare_loop_per_s']:,.0f}/s ({floor['bare_loop_cpu_us']:.1f} us); `DataGenerator` "
                         f"calling the loader in-line {floor['inline_generator_per_s']:,.0f}/s "
                         f"({floor['inline_generator_cpu_us']:.1f} us): the generator's own work, "
                         f"{floor['generator_us_per_batch']:.1f} us a batch, is in every backend's parent.")
        hand = prof.get("handoff_floor")
        if hand:
            lines.append(f"- tiny, a bare handoff of the same loader with no library (window 2 per worker): "
                         f"threads and `queue.SimpleQueue` {hand['threads_per_s']:,.0f}/s "
                         f"({hand['threads_cpu_us']:.1f} us CPU a batch); processes over socketpairs, a pickle "
                         f"each way, round robin {hand['processes_per_s']:,.0f}/s (caller "
                         f"{hand['processes_cpu_us']:.1f} us a batch).")
        wide = prof.get("tiny_awkgen_process_prefetch_64")
        if wide:
            lines.append(f"- tiny with `prefetch=64` (a window the caller seldom waits on): "
                         f"{wide['batches_per_s']:,.0f} batches/s; parent {wide['parent_cpu_us_per_batch']:,.1f} us "
                         f"CPU per batch, workers {wide['workers_cpu_us_per_batch']:,.1f} us.")
        msgs = prof.get("message_floor")
        if msgs:
            lines.append("- tiny, the same bare process pool with several batches a message each way (k a message, "
                         "window): " + "; ".join(f"k={m['per_message']}, window {m['window']}"
                                                 f"{', streamed to one worker' if m.get('streaming') else ''}: "
                                                 f"{m['per_s']:,.0f}/s, "
                                                 f"caller {m['caller_cpu_us']:.1f} us, workers "
                                                 f"{m['workers_cpu_us']:.1f} us a batch" for m in msgs.values()) + ".")
    errors = [r for r in records if r.get("error")]
    partial = [r for r in records if r.get("failed_rounds")]
    leaks = results.get("leaks") or []
    if errors or leaks or partial:
        lines += ["", "## Problems", ""]
        lines += [f"- {r['scenario']} / {r['contender']}: {r['error']}" for r in errors]
        lines += [f"- {r['scenario']} / {r['contender']}: {len(r['failed_rounds'])} round(s) failed: "
                  f"{r['failed_rounds'][0]}" for r in partial]
        lines += [f"- leaked process after {lk['after']}: pid {lk['pid']} `{lk['cmdline'][:80]}` (killed)"
                  for lk in leaks]
    lines += ["", "## Scenarios", ""]
    for s in results["scenarios"].values():
        lines.append(f"- **{s['title']}** ({s['unit']}): {s['what']}.")
    lines += ["", f"Settings: {json.dumps(results['settings'])}. Total wall time {results['wall_s']:.0f} s.", ""]
    return "\n".join(lines)


def _bigids_lines(records: list[dict[str, Any]]) -> list[str]:
    """The ids-at-scale scenario's own tables (its rows are not the contenders of the summary).

    >>> rs = [{"scenario": "bigids", "contender": "grain, range 10^9", "case": "range", "construction_s": 0.0001,
    ...        "first_batch_s": 0.004, "batches": 900, "batches_per_s": 240.0, "anon_growth_mib": 0.1},
    ...       {"scenario": "bigids", "contender": "torch, order 10^6 x1", "case": "order", "us_per_batch": 0.3}]
    >>> print("\\n".join(_bigids_lines(rs)[5:8]))
    | grain, range 10^9 | 0.0001 | 0.004 | 900 (240) | 0.1 | |
    <BLANKLINE>
    | order of 10^6 ids | us per batch (over one epoch, or until the budget) |
    """
    rows = [r for r in records if r["scenario"] == "bigids"]
    if not rows:
        return []
    ids = [r for r in rows if r.get("case") in ("range", "memmap") or r.get("error")]
    lines = ["", "## A billion ids (scenario 10)", "",
             "| ids | construction s | first batch s | batches (per s) | anonymous memory growth MiB | note |",
             "|---|---:|---:|---:|---:|---|"]
    for r in ids:
        if r.get("skipped") or r.get("error"):
            lines.append(f"| {r['contender']} | - | - | - | - | {r.get('skipped') or r.get('error')} |")
            continue
        lines.append(f"| {r['contender']} | {_num(r['construction_s'], 2)} | {_num(r['first_batch_s'], 2)} | "
                     f"{r['batches']:,} ({_num(r['batches_per_s'])}) | {_num(r['anon_growth_mib'])}{_spread(r)} | |")
    lines += ["", "| order of 10^6 ids | us per batch (over one epoch, or until the budget) |", "|---|---:|"]
    lines += [f"| {r['contender']} | {_num(r['us_per_batch'])}{_spread(r)} |" for r in rows if r.get("case") == "order"]
    return lines


def plot(results: dict[str, Any], path: str) -> None:
    """One horizontal bar chart per summary column: awkgen's contenders and each peer's best
    configuration in that column (named on its bar), with the rounds' range as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = results["records"]
    families = _families(results["contenders"])
    panels = [(s, w, h.replace("<br>", "\n"), "value") for s, w, h in _present(records)
              if any(r["scenario"] == s and (w is None or r["workers"] == w) and r.get("value") is not None
                     for r in records)]
    if any(p[0] == "pathids" for p in panels):
        panels.append(("pathids", None, "1 M path ids x8\npeak PSS of the whole tree, MiB", "peak_pss_mib"))
    if not panels:
        return
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 0.42 * len(families) * rows + 1.6 * rows),
                             squeeze=False)
    for ax, (s, w, title, key) in zip(axes.flat, panels):
        labels, values, lows, highs, colors = [], [], [], [], []
        for fam, names in families.items():
            r = family_best(records, s, w, names)
            v = (r.get(key) or 0.0) if r else 0.0
            sp = ((r or {}).get("spread") if key == "value" else None) or [v, v]
            labels.append(r["contender"] if r else fam)
            values.append(v)
            lows.append(max(0.0, v - sp[0]))
            highs.append(max(0.0, sp[1] - v))
            colors.append("#1f77b4" if fam.startswith("awkgen") else "#999999")
        ax.barh(range(len(values)), values, color=colors, xerr=[lows, highs], error_kw={"elinewidth": 0.8})
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ideal = next((r.get("ideal") or r.get("ideal_s") for r in records if r["scenario"] == s
                      and (r.get("ideal") or r.get("ideal_s")) and (w is None or r["workers"] == w)), None)
        limit = {"overlap": 1.05}.get(s)
        for x in (ideal, limit):
            if x:
                ax.axvline(x, color="#d62728", linestyle="--", linewidth=1)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    m = results["machine"]
    fig.suptitle(f"awkgen vs each peer's best configuration: {m['nproc']} cores, {m['cpu_model']}, {m['date']} "
                 "(red: ideal / target; bars: median round, whiskers: range)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out_dir: str, results: dict[str, Any]) -> dict[str, str]:
    """Write the three files into *out_dir*; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "results.json"), "markdown": os.path.join(out_dir, "results.md"),
             "png": os.path.join(out_dir, "results.png")}
    with open(paths["json"], "w") as f:
        json.dump(results, f, indent=1, default=_jsonable)
        f.write("\n")
    with open(paths["markdown"], "w") as f:
        f.write(markdown(results))
    plot(results, paths["png"])
    return paths


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    return str(x)


_RST_HEADERS = {"latency": "latency x{w}", "bandwidth": "bandwidth x2", "cpu": "CPU x2", "tiny": "tiny x2",
                "decode": "JPEG decode x2", "coldstart": "cold start x8", "overlap": "fit overlap",
                "memory": "memory x2", "pathids": "1 M path ids x8"}


def rst_table(results: dict[str, Any]) -> str:
    """README's table: awkgen's contenders and each peer's best configuration per column, as an
    RST simple table (``python -m benchmarks.report results.json --rst``)."""
    records = results["records"]
    present = _present(records)
    rows = [["contender"] + [_RST_HEADERS[s].format(w=w) for s, w, _ in present]]
    for fam, names in _families(results["contenders"]).items():
        row = [fam if len(names) == 1 else f"{fam} (best)"]
        for s, w, _ in present:
            r = family_best(records, s, w, names)
            label = f" [{r['contender'].split('[', 1)[1][:-1]}]" if r and "[" in r["contender"] else ""
            row.append((_cell(r, spread=False) + label) if r else "-")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    fmt = [("  ".join(c.ljust(w) for c, w in zip(row, widths))).rstrip() for row in rows]
    return "\n".join([rule, fmt[0], rule, *fmt[1:], rule])


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    source = args[0] if args else os.path.join(os.path.dirname(__file__), "results", "results.json")
    with open(source) as f:
        data = json.load(f)
    if "--retarget" in sys.argv:  # recompute the derived ratios and the targets with this checkout's rules
        from benchmarks.scenarios import evaluate_targets, rederive

        data["records"] = rederive(data["records"])
        data["targets"] = evaluate_targets(data["records"], data.get("profile"))
    if "--rst" in sys.argv:
        print(rst_table(data))
    else:
        print(write(os.path.dirname(os.path.abspath(source)), data))
