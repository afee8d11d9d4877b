"""The frozen backbones of a run's feature sets, fed from one decoded square per frame.

Precision and memory format are settings, not device checks: bf16 autocast and channels_last
run on the CPU as well as on CUDA (the defaults on a GPU), so the GPU path is code that the
tests execute; only the device the tensors live on differs.

No allocation churn on the hot path: a batch is prepared and run set by set, one batch at a time
(the working set is one batch's); the decoded squares are gathered into one reused staging buffer
(pinned on CUDA, so the copy to the device is asynchronous) and each set's padded input into one
reused buffer in its memory format.
"""
from __future__ import annotations

import numpy as np
import torch

from . import backbones as bb
from .core.errors import SettingsError

__all__ = ["PRECISIONS", "FeatureRunner", "snippet_of"]
PRECISIONS = ("fp32", "bf16")


def snippet_of(specs: list[bb.FeatureSet]) -> tuple[int, int]:
    """(frames, stride) of the one snippet a run's snippet sets read around each sample ((0, 0): none)."""
    snippets = {(fs.backbone.clip_frames, fs.backbone.clip_stride) for fs in specs if fs.output == "clip"}
    if len(snippets) > 1:
        raise SettingsError(f"the snippet sets of one run must read one snippet (here: "
                            f"{', '.join(f'{n} frames {s} apart' for n, s in sorted(snippets))})",
                            "extract them in separate runs")
    return snippets.pop() if snippets else (0, 0)


class FeatureRunner:
    """The frozen modules of all feature sets; `__call__` computes every set's features of a
    batch of decoded squares, `run` one set's on prepared inputs."""

    def __init__(self, specs: list[bb.FeatureSet], weights: dict[str, str], device: torch.device, batch_size: int,
                 precision: str = "fp32", channels_last: bool = False, preprocess: str = "eval"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.specs, self.device, self.batch_size = specs, device, batch_size
        self.precision, self.channels_last, self.preprocess = precision, channels_last, preprocess
        self.canvas = bb.canvas_for(specs, preprocess)
        self.clip_frames, self.clip_stride = snippet_of(specs)
        self.modules, self.gflops, self._inputs, self._staging = {}, {}, {}, {}
        for fs in specs:
            module = bb.build(fs, weights[fs.name])
            self.gflops[fs.name] = module.gflops_per_frame   # counted on the CPU, batch 1
            module = module.to(device)
            if channels_last and fs.output != "clip":
                module = module.to(memory_format=torch.channels_last)
            self.modules[fs.name] = module

    def _forward(self, module, part: torch.Tensor) -> torch.Tensor:
        # One memory format for every call: convolution kernels (and so the last bits of the
        # results) differ between formats, and a padded tail would otherwise differ.
        four_d = self.channels_last and part.dim() == 4
        part = part.contiguous(memory_format=torch.channels_last if four_d else torch.contiguous_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return module(part).float()

    def _input_buffer(self, fs: bb.FeatureSet, part: torch.Tensor, batch: int) -> torch.Tensor:
        """The set's reused input of `batch` rows on the device, in the memory format every call has."""
        shape = (batch,) + tuple(part.shape[1:])
        buffer = self._inputs.get(fs.name)
        if buffer is None or tuple(buffer.shape) != shape or buffer.dtype != part.dtype:
            four_d = self.channels_last and part.dim() == 4
            buffer = torch.empty(shape, dtype=part.dtype, device=self.device,
                                 memory_format=torch.channels_last if four_d else torch.contiguous_format)
            self._inputs[fs.name] = buffer
        return buffer

    def run(self, fs: bb.FeatureSet, x: torch.Tensor, padded: bool = True) -> torch.Tensor:
        """The set's module on prepared inputs x [n, ...]. padded: in calls of exactly the batch size
        (zero-padded tail, in one reused buffer), so that a frame's feature does not depend on its
        neighbours (resumes are bit-identical); otherwise in calls of at most the batch size, nothing
        more computed."""
        batch = self.batch_for(fs)
        outputs = []
        for start in range(0, len(x), batch):
            part = x[start:start + batch].to(self.device, non_blocking=True)
            rows = len(part)
            if padded:
                buffer = self._input_buffer(fs, part, batch)
                buffer[:rows].copy_(part)
                buffer[rows:].zero_()
                part = buffer
            outputs.append(self._forward(self.modules[fs.name], part)[:rows])
        return torch.cat(outputs) if outputs else torch.zeros(0, *fs.feature_shape[-1:], device=self.device)

    def batch_for(self, fs: bb.FeatureSet) -> int:
        """Rows per network call: a snippet holds many frames (SlowFast's 32), so an eighth of the batch size."""
        return max(1, self.batch_size // 8) if fs.output == "clip" else self.batch_size

    def reset_buffers(self) -> None:
        """Forget the reused buffers (the batch size changed)."""
        self._inputs, self._staging = {}, {}

    def stage(self, name: str, parts: list[torch.Tensor]) -> torch.Tensor:
        """The parts (each video's decoded squares, or snippets) one after another in a reused buffer:
        pinned host memory on CUDA (its copy to the device is asynchronous), plain memory on the CPU."""
        rows = sum(len(p) for p in parts)
        buffer = self._staging.get(name)
        if buffer is None or len(buffer) < rows or tuple(buffer.shape[1:]) != tuple(parts[0].shape[1:]):
            buffer = torch.empty((max(rows, self.batch_size),) + tuple(parts[0].shape[1:]), dtype=parts[0].dtype,
                                 pin_memory=self.device.type == "cuda")
            self._staging[name] = buffer
        return torch.cat(parts, out=buffer[:rows]) if len(parts) > 1 else buffer[:rows].copy_(parts[0])

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, clips: torch.Tensor | None) -> dict[str, np.ndarray]:
        """images [n, S, S, 3] uint8 -> {set: features [n, ...] float16}, one batch at a time."""
        out: dict[str, list] = {fs.name: [] for fs in self.specs}
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size].to(self.device, non_blocking=True)
            snippets = None if clips is None else clips[start:start + self.batch_size].to(self.device, non_blocking=True)
            for fs in self.specs:
                if fs.output == "clip":
                    feats = self.run(fs, fs.prepare_clips(snippets, self.preprocess))
                elif fs.output == "grid":
                    # one gather cuts every candidate: [n * G * G, 3, P, P], row-major
                    patches = fs.cut_patches(fs.prepare(batch, self.preprocess))
                    feats = self.run(fs, patches).view(len(batch), fs.grid ** 2, -1)
                else:
                    feats = self.run(fs, fs.prepare(batch, self.preprocess))
                out[fs.name].append(feats.to(torch.float16).cpu().numpy())
        return {name: np.concatenate(parts) if parts else np.zeros((0,)) for name, parts in out.items()}
