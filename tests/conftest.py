"""Shared fixtures: small real videos written with PyAV, and the clips in ../shared/videos."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO.parent / "shared" / "videos"

# The tests never download: torch.hub looks in a folder of their own, and c2f is offline (the test of
# the download path turns it back on against a local server).
os.environ.setdefault("TORCH_HOME", str(REPO / ".pytest_cache" / "torch_home"))
os.environ.setdefault("C2F_OFFLINE", "1")
# counted GFLOPs are kept here, not in the user's ~/.cache/c2f
os.environ.setdefault("C2F_CACHE", str(REPO / ".pytest_cache" / "c2f_cache"))
# `make test` runs the suite on several workers (pytest-xdist): each worker, and the processes it
# starts, gets its share of the cores, not all of them (read before torch starts its thread pool)
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // WORKERS)))
# each of these files' tests runs on one worker: their module-wide fixtures (a trained demo, an extracted
# cache) are built once; the others' tests are spread one by one (`--dist loadgroup`)
SPREAD_ONE_BY_ONE = {"test_bench.py"}


def pytest_collection_modifyitems(config, items):
    """Each file's tests form one group of workers' tests (but SPREAD_ONE_BY_ONE's); tests marked `cuda`
    skip where there is no CUDA device (C2F_CUDA_TESTS_DEVICE=cpu runs them on the CPU instead:
    tests/test_cuda.py)."""
    import torch
    for item in items:
        if item.path.name not in SPREAD_ONE_BY_ONE:
            item.add_marker(pytest.mark.xdist_group(item.path.name))
    if torch.cuda.is_available() or os.environ.get("C2F_CUDA_TESTS_DEVICE") == "cpu":
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (bench/gpu.sh runs these on a GPU)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


def frame_image(index: int, width: int, height: int) -> np.ndarray:
    """A frame that encodes its own index: mean brightness 8 * (index % 30) + 10, plus a bar."""
    image = np.full((height, width, 3), 8 * (index % 30) + 10, dtype=np.uint8)
    image[: height // 4, : width // 4] = (255, 0, 0)          # red block top-left: shows rotation
    return image


def blocks_image(index: int, width: int, height: int) -> np.ndarray:
    """A frame of coarse random colour blocks, different in every frame (seeded by its index)."""
    blocks = np.random.default_rng(index).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.ascontiguousarray(blocks.repeat(-(-height // 4), 0).repeat(-(-width // 4), 1)[:height, :width])


def make_video(path: Path, num_frames: int = 30, fps: int = 10, width: int = 96, height: int = 64,
               codec: str = "libx264", rotate: int | None = None, pts_seconds: list[float] | None = None,
               gop: int = 10, faststart: bool = False, fixed_gop: bool = False, image_of=frame_image) -> Path:
    """Write an H.264 mp4 with PyAV. `pts_seconds` makes a variable-frame-rate video; `fixed_gop`: a
    keyframe every `gop` frames and nowhere else (no scene-cut keyframes); `image_of(index, width,
    height)`: each frame's RGB image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.options = {"bf": "0"} if codec == "libx264" else {}
        if fixed_gop:
            stream.codec_context.options |= {"x264-params": f"scenecut=0:keyint={gop}:min-keyint={gop}"}
        if rotate is not None:
            stream.metadata["rotate"] = str(rotate)
        time_base = Fraction(1, 1000)
        stream.codec_context.time_base = time_base
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(image_of(i, width, height), format="rgb24")
            seconds = pts_seconds[i] if pts_seconds is not None else i / fps
            frame.pts, frame.time_base = int(round(seconds * 1000)), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 16000), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_manifest(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """rows: (video_id, path, labels, split), written by the project's own (quoting) writer."""
    from pipeline.core.manifest import write_manifest as write_rows
    return write_rows([dict(zip(("video_id", "path", "labels", "split"), row)) for row in rows], path)


@pytest.fixture(scope="session")
def shared_videos() -> list[Path]:
    if not SHARED_VIDEOS.is_dir():
        pytest.skip(f"{SHARED_VIDEOS} is absent (a fresh clone has no ../shared)")
    videos = sorted(SHARED_VIDEOS.glob("*.mp4"))
    if not videos:
        pytest.skip(f"no mp4 clips in {SHARED_VIDEOS}")
    return videos


@contextmanager
def cache_lock_held_elsewhere(folder: Path):
    """Another process holds the cache lock of `folder` until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; from pipeline.core.files import FolderLock\n"
                               f"with FolderLock({str(folder)!r}):\n print('held', flush=True); time.sleep(60)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


@contextmanager
def training_killed_when(when, error: type[BaseException] = KeyboardInterrupt):
    """Within the block, c2f's training loop raises `error` as it starts an epoch whose progress
    (stage, epoch: c2f.training.loop) `when` accepts, as a killed run stops; after it, training as usual."""
    import c2f.training.loop
    original = c2f.training.loop._one_epoch

    def one_epoch(head, train, cfg, generator, optimizer, schedule, bar, progress, stage, label):
        if when(progress):
            raise error
        original(head, train, cfg, generator, optimizer, schedule, bar, progress, stage, label)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(c2f.training.loop, "_one_epoch", one_epoch)
        yield


def checked_exit_trace(head, batches, quantiles) -> tuple[np.ndarray, np.ndarray]:
    """A stepping head's exit trace (EarlyExit.exit_trace), checked: at the thresholds at these quantiles
    of its confidences, the head's mean GFLOPs equal what the trace says. The head is left at the last."""
    from c2f.blocks.exits import mean_cost_at
    confidence, cost = head.exit_trace(batches)
    for threshold in np.quantile(confidence[np.isfinite(confidence)], quantiles):
        head.exit_threshold.fill_(float(threshold))
        assert head.mean_gflops(batches) == pytest.approx(mean_cost_at(confidence, cost, threshold), rel=1e-5)
    return confidence, cost


def assert_exit_reads_less(head, videos) -> None:
    """At the head's exit threshold, against none: no video sees or reads more, and some see less."""
    from c2f.evaluate import run_head
    result = run_head(head, videos)
    head.exit_threshold.fill_(float("inf"))
    full = run_head(head, videos)
    assert (result.frames_seen() <= full.frames_seen()).all() and (result.frames_seen() < full.frames_seen()).any()
    for role in result.reads:
        assert (result.per_video(role) <= full.per_video(role)).all()
