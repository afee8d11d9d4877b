"""`c2f extract` as a whole process, the way a user runs it: wall time, CPU time in user code and in the
kernel, minor page faults, peak RSS and sampled frames/s (frames over the whole process's wall time),
per batch size.

    python bench/extract_process.py [--backbone resnet50@224] [--batch-sizes default,4,8,16,32] [--runs 5]
                                    [--fps 1 | --num-frames 4] [--repeat 4] [--threads 2] [--smoke]

The videos are ../shared/videos repeated --repeat times (different ids, same files: 16 videos by
default). Weights are random (no download), fp32, --threads threads (OMP_NUM_THREADS). `default` is
c2f's own choice (no --batch-size). The runs alternate between the batch sizes, so a slow moment of
the machine does not fall on one of them alone; each line gives the median and [min, max] over --runs.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.core.manifest import write_manifest          # noqa: E402


def run_process(command: list[str], env: dict, cwd: Path = REPO) -> dict:
    """One whole process: wall time, and its resource usage from wait4 (this child and the children it
    waited for: ru_maxrss is the largest of them); the output of a failed run ends the bench."""
    with tempfile.TemporaryFile("w+") as log:        # a file, not a pipe: wait4 must reap the child itself
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        log.seek(0)
        output = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed: {output[-800:]}")
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "faults": usage.ru_minflt,
            "rss_gb": usage.ru_maxrss / 2**20, "output": output}


def one_run(manifest: Path, out: Path, backbone: str, batch: str, sampling: list[str], threads: int) -> dict:
    """One whole `c2f extract` process, random weights, fp32."""
    command = [sys.executable, "-m", "c2f", "extract", "--manifest", str(manifest), "--out", str(out), "--backbone",
               backbone, "--weights", "random", "--precision", "fp32", "--no-progress", *sampling]
    if batch != "default":
        command += ["--batch-size", batch]
    run = run_process(command, {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    run["frames"] = extracted_frames(run["output"])
    run["fps"] = run["frames"] / run["wall"]
    return run


def extracted_frames(output: str) -> int:
    """The frame count `c2f extract` prints last ("... N frames in ...")."""
    return int(output.split(" frames in ")[0].rsplit(" ", 1)[-1])


def summary_line(batch: str, runs: list[dict]) -> str:
    def spread(key, fmt):
        values = [r[key] for r in runs]
        return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}, {format(max(values), fmt)}]"
    kernel = statistics.median(r["sys"] / (r["user"] + r["sys"]) for r in runs)
    return (f"batch {batch:<8} wall {spread('wall', '.2f')} s   frames/s {spread('fps', '.2f')}   "
            f"user {spread('user', '.1f')} s   system {spread('sys', '.2f')} s ({kernel:.1%} of CPU)   "
            f"minor faults {spread('faults', ',.0f')}   peak RSS {spread('rss_gb', '.3f')} GB   "
            f"({runs[0]['frames']} frames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50@224")
    parser.add_argument("--batch-sizes", default="default,4,8,16,32")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fps", type=float, default=None)
    parser.add_argument("--num-frames", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    parser.add_argument("--smoke", action="store_true", help="one tiny video, mobilenet_v2@112, one run each")
    args = parser.parse_args()
    sampling = ["--num-frames", str(args.num_frames)] if args.num_frames else ["--fps", str(args.fps or 1.0)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:               # one of the demo's videos (3 s, H.264), made here
            from c2f.demo.videos import DemoVideoConfig, write_demo_videos
            write_demo_videos(DemoVideoConfig(str(Path(tmp) / "demo"), train_videos=1, val_videos=0, progress=False))
            videos = sorted((Path(tmp) / "demo" / "videos").glob("*.mp4"))
            args.backbone, args.runs, args.repeat, args.batch_sizes = "mobilenet_v2@112", 1, 1, "default,4"
        else:
            videos = sorted(Path(args.videos).glob("*.mp4"))
        if not videos:
            raise SystemExit(f"no mp4 files in {args.videos}")
        rows = [{"video_id": f"{v.stem}-{r}", "path": str(v.resolve()), "labels": "x", "split": "train"}
                for r in range(args.repeat) for v in videos]
        manifest = write_manifest(rows, Path(tmp) / "manifest.csv")
        batches = args.batch_sizes.split(",")
        print(f"{len(rows)} videos, {args.backbone}, fp32, {args.threads} threads, "
              f"{' '.join(sampling)}, {args.runs} runs each, alternating")
        results = {batch: [] for batch in batches}
        for run in range(args.runs):
            for batch in batches:
                out = Path(tmp) / f"cache-{batch}-{run}"
                results[batch].append(one_run(manifest, out, args.backbone, batch, sampling, args.threads))
        for batch in batches:
            print(summary_line(batch, results[batch]))
    print(f"(this bench's own peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB)")


if __name__ == "__main__":
    main()
