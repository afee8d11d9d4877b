"""`c2f report`: every table the runs can fill (CSV), runs.csv (every run), missing.txt (the commands
for the rows no run fills), flops.csv and paper_baselines.csv, the figures (PNG) and report.md. The
papers' sets whose library is not installed are left out of the last two, each with a warning.

A row's run is the one whose settings match the row's; among several, the one closest to the
defaults, then the newest. A table whose runs come from different manifests or caches is refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import RunError

from ..points import exit_point, points_of
from .figures import make_figures, operating_points, training_curves
from .missing import command_for
from .pricing import flops_rows, paper_baselines, paper_costs
from .runs import Run, differing, find_runs, select
from .tables import METRICS, Table, paper_tables


def build_table(table: Table, runs: list[Run], runs_dir: Path,
                taken: dict[str, str]) -> tuple[pd.DataFrame | None, list[str], str | None]:
    """The table (None when no row has its runs), the missing rows' lines, and a refusal message."""
    rows, missing, used = [], [], []
    reference = runs[0].settings if runs else {"manifest": "M.csv", "cache": "CACHE"}
    for label, match in table.rows:
        cells, absent, method = {}, [], match["method"]
        for column in table.columns:
            run = select(runs, match | column.match)
            if run is None:
                absent.append(match | column.match)
            else:
                cells[column.label] = METRICS[column.metric](run.metrics, run.feature_sets)
                used.append(run)
        if absent:     # one line per run to make (a run can fill several columns)
            missing += dict.fromkeys(f"{table.name} / {label}: " + command_for(m, runs, reference, runs_dir, taken)
                                     for m in absent)
        else:
            published = {"published with": table.published.get(label, "")} if table.published else {}
            rows.append({"row": label, "method": method} | cells | published)
    sources = {r.source for r in used}
    if len(sources) > 1:
        return None, missing, (f"{table.name}: refused, its runs come from {len(sources)} different manifests or "
                               f"caches ({', '.join(sorted({str(r.path) for r in used})[:4])} ...)")
    return (pd.DataFrame(rows) if rows else None), missing, None


def _number(value, digits: int = 4):
    return round(float(value), digits) if value is not None and np.isfinite(value) else None


def runs_table(runs: list[Run], runs_dir: Path) -> pd.DataFrame:
    """runs.csv: every run, its method and sets, the settings that differ from its defaults, its metrics."""
    rows = []
    for run in runs:
        sets = ", ".join(f"{role}: {info['name']}" for role, info in run.feature_sets.items())
        settings = "; ".join(f"{k}={v}" for k, v in differing(run.settings, every=True).items())
        rows.append({"run": str(run.path.relative_to(runs_dir)), "method": run.method, "feature_sets": sets,
                     "settings": settings, "top1": _number(run.metrics["top1"]), "mAP": _number(run.metrics["mAP"]),
                     "gflops": _number(run.metrics["gflops_mean"], 2), "fine_reads": _number(run.metrics["fine_mean"], 2),
                     "videos": run.metrics["num_videos"], "split": run.metrics["split"]})
    return pd.DataFrame(rows)


def exit_points(runs: list[Run], runs_dir: Path) -> pd.DataFrame:
    """early_exit.csv: per run with early-exit points, the point chosen on its calibration videos (the
    cheapest within 1 point of top-1 of the head as trained there: c2f.points), and that point's
    figures on the eval split beside the run's as trained."""
    rows = []
    for run in runs:
        curve = run.files.table("curve.csv")
        points = points_of(run.metrics, curve) if curve is not None else pd.DataFrame()
        chosen = exit_point(points, run.metrics["calibration"]["chosen_on"]) if len(points) else None
        if chosen is None:
            continue
        rows.append({"run": str(run.path.relative_to(runs_dir)), "method": run.method,
                     "chosen_on": chosen["chosen_on"], "exit target": chosen["target"],
                     "top1": _number(run.metrics["top1"]), "gflops": _number(run.metrics["gflops_mean"], 2),
                     "exit top1": _number(chosen["top1"]), "exit gflops": _number(chosen["gflops_mean"], 2)})
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _paper_tables(runs: list[Run], runs_dir: Path, out: Path) -> tuple[list[str], list[str], list[str], list[str]]:
    """Every paper table the runs fill: (files written, report.md sections, missing lines, refusals)."""
    written, sections, missing, refused, taken = [], [], [], [], {}
    for table in paper_tables():
        frame, absent, refusal = build_table(table, runs, runs_dir, taken)
        missing += absent
        if refusal:
            refused.append(refusal)
        elif frame is not None:
            frame.to_csv(out / f"{table.name}.csv", index=False)
            written.append(f"{table.name}.csv")
            sections.append(f"## {table.title}\n\n{markdown(frame)}\n" + (f"\n{table.note}\n" if table.note else ""))
    return written, sections, missing, refused


def write_report(runs_dir: str | Path, out_dir: str | Path, count_paper_settings: bool = True) -> dict:
    """Every table the runs can fill (CSV), runs.csv, missing.txt, flops.csv, the figures and report.md."""
    runs_dir, out = Path(runs_dir).resolve(), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = find_runs(runs_dir)
    if not runs:
        raise RunError(f"no finished run (metrics.json + config.json) under {runs_dir}",
                       "give the folder your c2f train-head --out folders are in")
    costs = paper_costs() if count_paper_settings else None      # before any file: nothing half-written
    every = runs_table(runs, runs_dir)
    every.to_csv(out / "runs.csv", index=False)
    written, sections, missing, refused = _paper_tables(runs, runs_dir, out)
    points = operating_points(runs, runs_dir)
    if len(points):
        points.round(4).to_csv(out / "operating_points.csv", index=False)
        written.append("operating_points.csv")
        sections.append(f"## Operating points (each run's curve.csv)\n\n{markdown(points.round(4))}\n")
    exits = exit_points(runs, runs_dir)
    if len(exits):
        exits.to_csv(out / "early_exit.csv", index=False)
        written.append("early_exit.csv")
        sections.append("## Early exit, the point chosen on each run's calibration videos\n\n"
                        f"{markdown(exits)}\n\nThe eval split's figures of the point chosen without it.\n")
    sections.insert(0, f"## Every run\n\n{markdown(every)}\n")
    written.insert(0, "runs.csv")
    (out / "missing.txt").write_text("\n".join(missing) + ("\n" if missing else ""), encoding="utf-8")
    flops = pd.DataFrame(flops_rows(runs, costs))
    flops.to_csv(out / "flops.csv", index=False)
    sections.append(f"## GFLOPs per frame of every feature set (counted)\n\n{markdown(flops)}\n")
    written.append("flops.csv")
    if costs:
        baselines = pd.DataFrame(paper_baselines(costs=costs)).round(2)
        baselines.to_csv(out / "paper_baselines.csv", index=False)
        sections.append(f"## The papers' baselines in their settings (counted)\n\n{markdown(baselines)}\n")
        written.append("paper_baselines.csv")
    figures = make_figures(runs, out) + training_curves(runs, out, runs_dir)
    lines = [f"# c2f report: {len(runs)} runs under {runs_dir}\n", *sections]
    if refused:
        lines.append("## Refused\n\n" + "\n".join(f"- {r}" for r in refused) + "\n")
    left_out = costs[1] if costs else {}
    if left_out:
        lines.append("## Left out (library not installed)\n\n" + "\n".join(f"- {spec}: {err.line()}" for spec, err
                                                                          in left_out.items()) + "\n")
    lines.append(f"## Missing rows\n\n{len(missing)} rows have no run; missing.txt lists the commands.\n")
    lines += [f"![{name}]({name})\n" for name in figures]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return {"runs": len(runs), "tables": written, "figures": figures, "missing": len(missing), "refused": refused,
            "left_out": list(left_out)}
