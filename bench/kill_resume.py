"""SIGKILL `c2f extract` at random moments, restart it each time until it finishes, and check
that the cache equals one clean run (issue 6: 8 kills; tests/test_extract.py does fewer).

    python bench/kill_resume.py [--kills 8] [--videos 24] [--seed 0]
    python bench/kill_resume.py --smoke          # 1 kill, 4 videos
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from c2f.demo.videos import DemoVideoConfig, write_demo_videos  # noqa: E402
from pipeline.cache import read_feature_set  # noqa: E402

SETS = ["mobilenet_v2@112", "resnet18@224-grid3x96"]


def command(manifest: Path, out: Path) -> list[str]:
    args = [sys.executable, "-c", "from c2f.cli import main; main()", "extract", "--manifest", str(manifest), "--out", str(out),
            "--num-frames", "8", "--weights", "random", "--batch-size", "16", "--shard-videos", "2", "--no-progress"]
    for name in SETS:
        args += ["--backbone", name]
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="1 kill, 4 videos")
    args = parser.parse_args()
    if args.smoke:
        args.kills, args.videos = 1, 4
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = write_demo_videos(DemoVideoConfig(str(tmp / "videos"), train_videos=args.videos, val_videos=0,
                                                     progress=False))
        started = time.perf_counter()
        clean = subprocess.run(command(manifest, tmp / "clean"), cwd=REPO, capture_output=True, text=True)
        assert clean.returncode == 0, clean.stderr
        clean_seconds = time.perf_counter() - started
        print(f"clean run: {clean_seconds:.1f} s")

        kills, runs = 0, 0
        while True:
            runs += 1
            process = subprocess.Popen(command(manifest, tmp / "killed"), cwd=REPO,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if kills < args.kills:
                delay = rng.uniform(0.3, clean_seconds / 2)   # anywhere: start-up, decoding, computing, writing
                try:
                    process.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    kills += 1
                    process.wait()
                    index = tmp / "killed" / SETS[-1] / "index.json"
                    done = json.loads(index.read_text())["num_videos"] if index.exists() else 0
                    print(f"kill {kills} after {delay:.1f} s: {done}/{args.videos} videos in the index")
                    continue
            if process.wait() == 0:
                break
        for name in SETS:
            resumed, reference = read_feature_set(tmp / "killed" / name), read_feature_set(tmp / "clean" / name)
            assert sorted(resumed) == sorted(reference), name
            for video_id, expected in reference.items():
                assert np.array_equal(resumed[video_id].timestamps, expected.timestamps), video_id
                assert np.array_equal(resumed[video_id].features, expected.features), video_id
            index = json.loads((tmp / "killed" / name / "index.json").read_text())
            listed = [v for shard in index["shards"] for v in shard["videos"]]
            assert len(listed) == len(set(listed)) == args.videos and index["complete"]
            assert not list((tmp / "killed" / name).glob("*.tmp"))
        print(f"{kills} kills, {runs} runs: the cache is bit-identical to the clean run ({args.videos} videos, "
              f"{', '.join(SETS)})")


if __name__ == "__main__":
    main()
