"""The backbones' batch size when none is given. On the CPU a small batch: a batch's activations then
stay under the allocator's 32 MiB heap threshold (pipeline.core.memory) and in the caches, and the
process's peak memory stays low: 2, the size at which c2f's peak with ResNet-50 at 224 px stays below its
peer's (bench/peer_video_features.py; 4 costs about 60 MB more at peak, docs/measurements/phase-one.md;
bench/extract_process.py measures 2 to 32). On a GPU a large one,
bounded by its free memory: one frame of each set is run to measure its activations, and the batch
is the largest power of two up to 256 that fits in a quarter of what is free. A cache being resumed
keeps the batch size it was extracted with (its `batch_size` attribute), so that its features stay
bit-identical to an uninterrupted run's."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CPU_BATCH", "GPU_BATCH_MAX", "GPU_MEMORY_SHARE", "PREDICT_CALL_ROWS", "PREDICT_CALL_ROWS_CPU",
           "fitting", "measured_gpu_batch", "recorded"]
CPU_BATCH = 2
# c2f predict: rows a network call (its calls' rows vary: the frames a step reads, the frames a gate
# picks). On the CPU 16, where MobileNetV2 at 224 px keeps its activations under the heap threshold
# (at 32 rows a row costs 1.3-1.5x, at 1-2 rows the call's fixed cost shows: bench/predict.py --part
# calls); elsewhere 32.
PREDICT_CALL_ROWS_CPU = 16
PREDICT_CALL_ROWS = 32
GPU_BATCH_MAX = 256
GPU_MEMORY_SHARE = 0.25


def recorded(out: Path, names: list[str]) -> int | None:
    """The batch size a cache's sets were extracted with, when they record one."""
    for name in names:
        try:
            value = json.loads((Path(out) / name / "index.json").read_text(encoding="utf-8"))["attrs"].get("batch_size")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, int) and value > 0:
            return value
    return None


def fitting(bytes_per_frame: int, free_bytes: int, share: float = GPU_MEMORY_SHARE, largest: int = GPU_BATCH_MAX) -> int:
    """The largest power of two up to `largest` whose frames take at most `share` of the free memory
    (at least 1)."""
    batch = largest
    while batch > 1 and batch * bytes_per_frame > share * free_bytes:
        batch //= 2
    return batch


def measured_gpu_batch(runner) -> int:
    """For a runner on CUDA: run one frame of each set, measure the peak of its activations, and fit."""
    import torch
    device = runner.device
    probe = torch.zeros(1, runner.canvas, runner.canvas, 3, dtype=torch.uint8)
    clips = torch.zeros(1, runner.clip_frames, runner.canvas, runner.canvas, 3, dtype=torch.uint8) \
        if runner.clip_frames else None
    kept, runner.batch_size = runner.batch_size, 1
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    runner(probe, clips)
    per_frame = max(1, torch.cuda.max_memory_allocated(device) - baseline)
    runner.batch_size = kept
    runner.reset_buffers()
    free, _ = torch.cuda.mem_get_info(device)
    return fitting(per_frame, free)
