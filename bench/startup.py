"""How long c2f's light commands take as whole processes, against importing torch alone.

    python bench/startup.py [--runs demo_out/runs] [--repeat 5] [--smoke]

Each command is run --repeat times as its own process (min / median / max seconds): `c2f --help`,
`c2f --version`, `c2f manifest check` (the demo's manifest), `python -c "import torch, torchvision"`
(the floor for anything that needs a network), `c2f flops` (its counts read from the disk cache,
C2F_CACHE; the first, uncached call is timed apart) and `c2f report` on --runs (default: the demo's
runs; with --smoke, three tiny runs made here).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
C2F = [sys.executable, "-m", "c2f"]


def timed(command: list[str], repeat: int, env: dict) -> list[float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-500:]}")
    return seconds


def tiny_runs(root: Path) -> Path:
    """Three runs on a small synthetic cache, for --smoke."""
    from c2f.config import TrainConfig
    from c2f.demo.synthetic import liteeval_cache
    from c2f.training import train_head
    syn = liteeval_cache(root / "data", num_train=20, num_val=10, num_classes=3, frames=(3, 6),
                         coarse=("mobilenet_v2@112", 8), fine=("resnet101@224", 8))
    for method, own in (("uniform", {"frames": 3}), ("lstm", {"fine_hidden": 8}),
                        ("liteeval", {"coarse_hidden": 4, "fine_hidden": 8})):
        train_head(TrainConfig.of(method=method, manifest=str(syn.manifest), cache=str(syn.cache),
                                  out=str(root / "runs" / method), epochs=1, progress=False, **own))
    return root / "runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=REPO / "demo_out" / "runs")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one repeat, tiny runs made here")
    args = parser.parse_args()
    repeat = 1 if args.smoke else args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "C2F_CACHE": os.environ.get("C2F_CACHE", str(Path(tmp) / "c2f_cache"))}
        runs = tiny_runs(Path(tmp)) if args.smoke else args.runs
        commands = {"c2f --help": C2F + ["--help"], "c2f --version": C2F + ["--version"],
                    "c2f manifest check": C2F + ["manifest", "check", str(REPO / "data_manifests/demo/manifest.csv")],
                    "import torch, torchvision": [sys.executable, "-c", "import torch, torchvision"]}
        if not args.smoke:           # the first call counts DPN-107 and SlowFast (tens of seconds) unless cached
            print(f"{'c2f flops (first call)':<28}{timed(C2F + ['flops'], 1, env)[0]:8.2f} s")
            commands["c2f flops"] = C2F + ["flops"]
        if runs.is_dir():
            commands["c2f report"] = C2F + ["report", "--runs", str(runs), "--out", str(Path(tmp) / "report")]
        print(f"{'command':<28}{'min':>8}{'median':>8}{'max':>8}   ({repeat} runs, seconds)")
        for name, command in commands.items():
            seconds = timed(command, repeat, env)
            print(f"{name:<28}{min(seconds):8.2f}{statistics.median(seconds):8.2f}{max(seconds):8.2f}")


if __name__ == "__main__":
    main()
