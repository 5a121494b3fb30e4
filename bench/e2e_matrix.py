#!/usr/bin/env python3
"""Issue 12's end-to-end matrix: bench/e2e.py for each catalogue size and each engine, one after the other.

Runs `bench/e2e.py --items N --retrieval ENGINE` for every size in --items
and every engine in --engines (each run in a results directory of its own,
OUT/ENGINE-N/, with its own e2e.md, e2e.json and plots), then writes
OUT/e2e-matrix.md (one table of every run's drains and fixed rates, the
goals beside them) and OUT/e2e-matrix.png (freshness p50 and p99 against
the offered rate, a line per run). With --combine-only the runs are not
made again: the tables and plot are drawn from the e2e.json files already
in OUT. Options after `--` go to every e2e.py run unchanged.

Figures are printed, never asserted.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

# issue 12's goals: (offered events/s, catalogue or None for any, p99 ms)
P99_GOALS = ((10_000, 1_000_000, 100), (50_000, None, 500))
DRAIN_GOAL = 200_000


def log(message):
    print(f"[e2e-matrix {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_name(engine, items):
    return f"{engine}-{items}"


def fmt(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def load_runs(out, engines, sizes):
    runs = []
    for items in sizes:
        for engine in engines:
            path = out / run_name(engine, items) / "e2e.json"
            if path.exists():
                runs.append((engine, items, json.loads(path.read_text())))
            else:
                log(f"no {path}: left out of the tables")
    return runs


def goal_for(rate, items):
    for goal_rate, goal_items, p99 in P99_GOALS:
        if rate == goal_rate and (goal_items is None or goal_items == items):
            return p99
    return None


def write_markdown(out, runs):
    first = runs[0][2]
    lines = ["# streamrec end-to-end matrix", "",
             f"machine: {first['machine']}; {first.get('blas', 'OpenBLAS kernel unknown')}", "",
             "Each row is one `bench/e2e.py` run's figure (its own e2e.md has the rest); every "
             "fixed rate starts on a restarted daemon over the warm state and is measured from "
             f"{first['config']['settle_s']:g} s after the start for {first['config']['duration_s']:g} s.", "",
             "## Drains (a backlog learned flat out; medians of 1 s windows)", "",
             "| items | engine | cold: events/s, lists/s | warm: events/s, lists/s | goal |",
             "| --- | --- | --- | --- | --- |"]
    for engine, items, r in runs:
        drains = {d["name"]: d for d in r["drains"]}
        cells = []
        for name in ("drain-cold", "drain-warm"):
            d = drains.get(name)
            cells.append("–" if d is None else f"{fmt(d['events_per_s'])}, {fmt(d['lists_per_s'])}")
        lines.append(f"| {items:,} | {engine} | {cells[0]} | {cells[1]} | {DRAIN_GOAL:,} events/s |")
    lines += ["", "## Freshness at fixed rates (ms, medians over the run's windows)", "",
              "| items | engine | offered/s | learned/s | lists/s | p50 | p95 | p99 | p99.9 | deferred | "
              "CPU (cores) | machine busy | keeps up | p99 goal |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for engine, items, r in runs:
        for s in sorted(r["scenarios"], key=lambda s: s["offered_per_s"]):
            p = s["e2e_ms_window_median"]
            goal = goal_for(s["offered_per_s"], items)
            keeps_up = s["caught_up_s"] is not None and s["caught_up_s"] <= 2.0
            lines.append(
                f"| {items:,} | {engine} | {s['offered_per_s']:,} | {fmt(s['events_per_s'])} | "
                f"{fmt(s['lists_per_s'])} | {fmt(p.get('p50'))} | {fmt(p.get('p95'))} | "
                f"{fmt(p.get('p99'))} | {fmt(p.get('p999'))} | {fmt(s.get('deferred'))} | "
                f"{s['cpu_cores']:.2f} | {100 * s['machine_busy']:.0f}% | {'yes' if keeps_up else 'no'} | "
                f"{'–' if goal is None else f'< {goal}'} |")
    lines += ["", "Commands:", ""]
    lines += [f"- `{r['command']}`" for _, _, r in runs]
    lines.append("")
    (out / "e2e-matrix.md").write_text("\n".join(lines))
    log(f"wrote {out / 'e2e-matrix.md'}")


def plot(out, runs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, key, title in ((axes[0], "p50", "p50"), (axes[1], "p99", "p99")):
        for engine, items, r in runs:
            scenarios = sorted(r["scenarios"], key=lambda s: s["offered_per_s"])
            ax.plot([s["offered_per_s"] for s in scenarios],
                    [s["e2e_ms_window_median"].get(key, float("nan")) for s in scenarios],
                    marker="o" if engine == "index" else "s",
                    linestyle="-" if engine == "index" else "--",
                    label=f"{engine}, {items:,} items")
        if key == "p99":
            for rate, items, p99 in P99_GOALS:
                where = "1M items" if items else "any catalogue"
                ax.plot([rate], [p99], marker="*", markersize=14, color="black", linestyle="none",
                        label=f"goal: < {p99} ms at {rate // 1000}k/s ({where})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered events/s")
        ax.set_title(f"freshness {title} at the consumer")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("ms (receive time − the user's newest event)")
    first = runs[0][2]
    fig.suptitle(f"streamrecd end to end: {first['machine'].split(',')[2].strip()}, "
                 f"{first.get('blas', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "e2e-matrix.png", dpi=100)
    plt.close(fig)
    log(f"wrote {out / 'e2e-matrix.png'}")


def main():
    argv = sys.argv[1:]
    passed = []
    if "--" in argv:
        passed = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=str(ROOT / "build"), help="build directory (binaries)")
    p.add_argument("--out", default=str(ROOT / "build" / "bench-results" / "matrix"))
    p.add_argument("--items", type=lambda s: [int(x) for x in s.split(",")],
                   default=[100_000, 1_000_000], help="catalogue sizes, comma-separated")
    p.add_argument("--engines", type=lambda s: s.split(","), default=["index", "exact"],
                   help="retrieval engines, comma-separated (index, exact)")
    p.add_argument("--combine-only", action="store_true",
                   help="draw the tables and plot from the runs already in --out")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plot (no matplotlib needed)")
    a = p.parse_args(argv)
    for engine in a.engines:
        if engine not in ("index", "exact"):
            p.error(f"--engines: unknown engine '{engine}' (index, exact)")
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if not a.combine_only:
        for items in a.items:
            for engine in a.engines:
                run_out = out / run_name(engine, items)
                command = [sys.executable, str(ROOT / "bench" / "e2e.py"), "--build", a.build,
                           "--out", str(run_out), "--items", str(items), "--retrieval", engine,
                           *passed]
                log(" ".join(command))
                if subprocess.run(command).returncode != 0:
                    log(f"{run_name(engine, items)} failed; its figures are left out")
    runs = load_runs(out, a.engines, a.items)
    if not runs:
        sys.exit("e2e_matrix: no run's e2e.json in " + str(out))
    write_markdown(out, runs)
    if not a.no_plots:
        plot(out, runs)
    print((out / "e2e-matrix.md").read_text())


if __name__ == "__main__":
    main()
