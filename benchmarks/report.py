"""Write a run's results: ``results.json`` (everything), ``results.md`` (tables), ``results.png`` (plot).

The JSON is the source of truth; the Markdown and the plot are derived from it, so
``python -m benchmarks.report benchmarks/results/results.json`` redraws them.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

__all__ = ["write", "markdown", "plot"]

#: (scenario, workers or None, header, cell formatter) for the summary table.
_SUMMARY_COLUMNS: list[tuple[str, int | None, str]] = [
    ("latency", 8, "latency x8<br>batches/s (of ideal)"),
    ("latency", 32, "latency x32<br>batches/s (of ideal)"),
    ("bandwidth", None, "bandwidth x2<br>batches/s (GiB/s)"),
    ("cpu", None, "CPU-bound<br>batches/s (of ideal)"),
    ("tiny", None, "tiny<br>batches/s"),
    ("ttfb", None, "first batch x8<br>s (first trial)"),
    ("overlap", None, "fit overlap<br>epoch / max(load, train)"),
    ("memory", None, "memory x2<br>MiB beyond own (batches)"),
]


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _cell(r: dict[str, Any]) -> str:
    if r.get("error"):
        return "error"
    s = r["scenario"]
    v = r["value"]
    if s in ("latency", "cpu") and r.get("of_ideal") is not None:
        return f"{_num(v)} ({r['of_ideal']:.0%})"
    if s == "bandwidth":
        return f"{_num(v)} ({r['gib_per_s']:.2f})"
    if s == "ttfb":
        return f"{v:.3f} ({r['first_trial_s']:.2f})"
    if s == "overlap":
        return f"{v:.2f}"
    if s == "memory":
        return f"{v:,.0f} ({r['extra_batches']:.1f})"
    return _num(v)


def _find(records: list[dict[str, Any]], scenario: str, contender: str, workers: int | None) -> dict | None:
    for r in records:
        if r["scenario"] == scenario and r["contender"] == contender and (
                workers is None or r["workers"] in (workers, None)):
            return r
    return None


def markdown(results: dict[str, Any]) -> str:
    """The tables of a run, as GitHub-flavoured Markdown."""
    m = results["machine"]
    records = results["records"]
    contenders = results["contenders"]
    lines = [
        f"# awkgen comparative benchmark ({'quick' if results['settings']['quick'] else 'full'} run)",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; {m['date']}; load average at start {m['loadavg_at_start']}"
        + (f"; CPU steal during the run {100 * m['cpu_steal']:.1f}%" if m.get("cpu_steal") is not None else "")
        + ". "
        f"Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}.",
        "",
    ]
    if results.get("caveat"):
        lines += [f"> **Caveat:** {results['caveat']}", ""]
    present = [(s, w, h) for s, w, h in _SUMMARY_COLUMNS
               if any(r["scenario"] == s and (w is None or r["workers"] == w) for r in records)]
    lines += ["## Summary", "",
              "| contender | " + " | ".join(h for _, _, h in present) + " |",
              "|---|" + "---:|" * len(present)]
    for name in contenders:
        cells = []
        for s, w, _ in present:
            r = _find(records, s, name, w)
            cells.append(_cell(r) if r else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    refs = [r for r in records if r["reference"] and r.get("value") is not None]
    if refs:
        lines += ["", "Limits measured in the same run: " + "; ".join(
            f"{r['scenario']} {r['contender']}: {_num(r['value'])}"
            + (f" batches/s ({r['gib_per_s']:.2f} GiB/s)" if "gib_per_s" in r else "")
            + (f" s per epoch ({r['step_ms']:.1f} ms/step)" if "step_ms" in r else "")
            + (f" batches/s ({r['call_ms']:.1f} ms/call)" if "call_ms" in r else "")
            for r in refs) + "."]
    targets = results["targets"]
    if targets:
        lines += ["", "## Targets (awkgen)", "", "| target | contender | measured | threshold | result | unit |",
                  "|---|---|---:|---:|:---:|---|"]
        for t in targets:
            cmp = "<=" if t["target"] in ("time to first batch", "training overlap", "memory in flight") else ">="
            lines.append(f"| {t['target']} | {t['contender']} | {_num(t['measured'])} | {cmp} {_num(t['threshold'])} "
                         f"| {'PASS' if t['passed'] else '**FAIL**'} | {t['how']} |")
    errors = [r for r in records if r.get("error")]
    leaks = results.get("leaks") or []
    if errors or leaks:
        lines += ["", "## Problems", ""]
        lines += [f"- {r['scenario']} / {r['contender']}: {r['error']}" for r in errors]
        lines += [f"- leaked process after {lk['after']}: pid {lk['pid']} `{lk['cmdline'][:80]}` (killed)"
                  for lk in leaks]
    lines += ["", "## Scenarios", ""]
    for s in results["scenarios"].values():
        lines.append(f"- **{s['title']}** ({s['unit']}): {s['what']}.")
    lines += ["", f"Settings: {json.dumps(results['settings'])}. Total wall time {results['wall_s']:.0f} s.", ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: str) -> None:
    """One horizontal bar chart per scenario column of the summary, each contender a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = results["records"]
    contenders = results["contenders"]
    panels = [(s, w, h.replace("<br>", "\n")) for s, w, h in _SUMMARY_COLUMNS
              if any(r["scenario"] == s and (w is None or r["workers"] == w) and r.get("value") is not None
                     for r in records)]
    if not panels:
        return
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.42 * len(contenders) * rows + 1.6 * rows),
                             squeeze=False)
    colors = ["#1f77b4" if c.startswith("awkgen") else "#999999" for c in contenders]
    for ax, (s, w, title) in zip(axes.flat, panels):
        values = []
        for name in contenders:
            r = _find(records, s, name, w)
            values.append(r["value"] if r and r.get("value") is not None else 0.0)
        ax.barh(range(len(contenders)), values, color=colors)
        ax.set_yticks(range(len(contenders)), contenders, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ideal = next((r.get("ideal") for r in records if r["scenario"] == s and r.get("ideal")
                      and (w is None or r["workers"] == w)), None)
        limit = {"ttfb": 0.32, "overlap": 1.05}.get(s)
        for x in (ideal, limit):
            if x:
                ax.axvline(x, color="#d62728", linestyle="--", linewidth=1)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    m = results["machine"]
    fig.suptitle(f"awkgen vs peers: {m['nproc']} cores, {m['cpu_model']}, {m['date']} "
                 "(red: ideal / target)", fontsize=10)
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


if __name__ == "__main__":
    source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results", "results.json")
    with open(source) as f:
        data = json.load(f)
    print(write(os.path.dirname(os.path.abspath(source)), data))
