"""`c2f predict` on a clip set: a LiteEval run whose fine set is SlowFast (slowfast_r50, 32-frame snippets
every 2nd frame), checked on raw video against its evaluation on the cache. The weights are random: what
is measured is the pipeline (the same snippets, the same features, the same decisions, the GFLOPs), not
accuracy.

The demo's synthetic videos (c2f.demo.videos); the coarse set and the clip set extracted in one pass; a
liteeval run (gamma 0.5); then, on the val videos, prediction as it runs (every sample decoded, each
snippet cut when the head reads it) and with --budget (decoded as read, stopping at the budget). For
each: videos whose every decision equals the cache's, frames likewise, GFLOPs executed against those
charged on the cache, snippets the clip network ran against the fine reads, seconds by stage. And the
largest difference of every val snippet's feature, decoded and computed as prediction does, from the
cache's.

    python bench/predict_clips.py [--clip slowfast_r50] [--train 4] [--val 6] [--device cpu]
    python bench/predict_clips.py --smoke        # r3d_18 at 16 px, 2 + 2 videos (seconds)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from c2f.config import TrainConfig                       # noqa: E402
from c2f.data import load_videos                         # noqa: E402
from c2f.demo.videos import DemoVideoConfig, write_demo_videos  # noqa: E402
from c2f.evaluate import run_head                        # noqa: E402
from c2f.predict.engine import Predictor, Timer          # noqa: E402
from c2f.predict.lazy import LazySnippets                # noqa: E402
from c2f.training import train_head                      # noqa: E402
from pipeline.core.manifest import read_manifest         # noqa: E402
from pipeline.extract import ExtractConfig, extract      # noqa: E402

COARSE = "mobilenet_v2@112"


def build(root: Path, args) -> tuple[Path, float]:
    """Videos, the cache (both sets in one pass) and a liteeval run; the extraction's seconds."""
    clip, frames, device = args.clip, args.frames, args.device
    manifest = write_demo_videos(DemoVideoConfig(str(root / "data"), train_videos=args.train, val_videos=args.val,
                                                 num_frames=args.video_frames, progress=False))
    started = time.perf_counter()
    extract(ExtractConfig(str(manifest), str(root / "cache"), [COARSE, clip], num_frames=frames, weights=["random"],
                          batch_size=32, workers=0, device=device, progress=False))
    seconds = time.perf_counter() - started
    train_head(TrainConfig.of(method="liteeval", manifest=str(manifest), cache=str(root / "cache"),
                              out=str(root / "run"), coarse=COARSE, fine=clip, epochs=args.epochs, gamma=0.5, curve=False,
                              progress=False, device=device))
    return manifest, seconds


def measure(run: Path, cached, paths: list[tuple[str, str]], clip: str, device: str, budget: int | None) -> dict:
    """One way of predicting the val videos, against the run's evaluation on the cache."""
    predictor = Predictor.from_run(run, device=device, budget=budget)
    ran: list[int] = []
    predictor.runner.modules[clip].register_forward_hook(lambda m, args, out: ran.append(len(args[0])))
    timer = Timer()
    decoded = [predictor.decode(video_id, path) for video_id, path in paths]
    timer.seconds["decode"] += sum(d.seconds for d in decoded)
    for d in decoded:
        d.seconds = 0.0                  # counted above
    predicted = predictor.predictions(predictor.run_batch(decoded, timer))
    expected = run_head(predictor.head, cached, fine_budget=budget)
    bounds = cached.offsets.numpy()
    same = [(p.decisions.fine.values == expected.fine_reads()[bounds[i]:bounds[i + 1]]) for i, p in enumerate(predicted)]
    executed = np.array([p.gflops for p in predicted])
    return {"path": "eager" if budget is None else f"--budget {budget} (decoded as read)",
            "videos with every decision the cache's": f"{sum(s.all() for s in same)}/{len(same)}",
            "frames with the cache's decision": f"{sum(s.sum() for s in same)}/{sum(len(s) for s in same)}",
            "same class": f"{sum(int(p.probabilities.argmax() == expected.scores[i].argmax()) for i, p in enumerate(predicted))}/{len(predicted)}",
            "GFLOPs executed / charged (max rel. diff)": float(np.max(np.abs(executed / expected.gflops - 1))),
            "GFLOPs executed, mean": float(executed.mean()),
            "snippets run": int(sum(ran)), "fine reads": int(sum(p.fine_reads for p in predicted)),
            "samples": int(len(expected.fine_reads())),
            "seconds": {k: round(v, 2) for k, v in timer.seconds.items()}}


def feature_difference(run: Path, cached, paths: list[tuple[str, str]], device: str) -> dict:
    """Every val snippet decoded on demand and run as prediction does, against the cache's feature."""
    predictor = Predictor.from_run(run, device=device)
    runner, fs = predictor.runner, predictor.sets["fine"]
    decoded = [predictor.decode(video_id, path) for video_id, path in paths]
    snippets = LazySnippets([d.plan for d in decoded], runner.canvas, runner.clip_frames, runner.clip_stride)
    ours = torch.cat([runner.run(fs, fs.prepare_clips(snippets[[row]], runner.preprocess), padded=False)
                      for row in range(len(snippets))]).to(torch.float16).float().cpu()
    snippets.close()
    theirs = cached.features["fine"][:].float()
    return {"snippets compared": len(ours), "max abs diff": float((ours - theirs).abs().max()),
            "feature scale (max abs)": float(theirs.abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="slowfast_r50")
    parser.add_argument("--train", type=int, default=4)
    parser.add_argument("--val", type=int, default=6)
    parser.add_argument("--frames", type=int, default=6, help="samples a video")
    parser.add_argument("--video-frames", type=int, default=48, help="frames a video (8 fps)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--budget", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.clip, args.train, args.val, args.frames, args.video_frames, args.epochs = "r3d_18@16", 2, 2, 3, 24, 1
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        manifest, extract_seconds = build(root, args)
        entries = read_manifest(manifest)
        cached = load_videos(entries, "val", root / "cache", {"coarse": COARSE, "fine": args.clip})
        paths = [(e.video_id, str(e.path)) for e in entries.split("val")]
        assert [p[0] for p in paths] == cached.video_ids
        results = {"clip": args.clip, "device": args.device, "extract seconds (coarse + clip, all samples)":
                   round(extract_seconds, 1),
                   "paths": [measure(root / "run", cached, paths, args.clip, args.device, budget)
                             for budget in (None, args.budget)],
                   "features": feature_difference(root / "run", cached, paths, args.device)}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
