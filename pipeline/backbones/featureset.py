"""A feature set: a backbone, the size of the square it sees, and what is kept per frame (its pooled
vector, its last map, one pooled vector per candidate patch of a grid, or a snippet's vector); and how
a decoded frame becomes its input: its weights' evaluation crop of the one decoded square, resized to
its input size, normalised (`prepare`, `prepare_clips`), and the grid's patches (`cut_patches`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .backbone import Backbone

PREPROCESS = ("eval", "full")


def canvas_for(sets, preprocess: str) -> int:
    """The side of the one decoded square that serves every set: the largest resize (nothing is upscaled)."""
    return max(fs.resize_size(preprocess) for fs in sets)


@dataclass(frozen=True)
class FeatureSet:
    name: str            # canonical spec, also the cache folder name
    backbone: Backbone
    input_size: int      # side of the square frame the backbone (or the grid) sees
    output: str          # "pooled", "map", "grid" or "clip"
    grid: int = 0
    patch_size: int = 0

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one frame's feature in the cache."""
        if self.output == "map":
            side = -(-self.input_size // self.backbone.map_stride)
            return (self.backbone.map_channels, side, side)
        if self.output == "grid":
            return (self.grid * self.grid, self.backbone.feature_dim)
        return (self.backbone.feature_dim,)

    @property
    def feature_dim(self) -> int:
        return self.backbone.map_channels if self.output == "map" else self.backbone.feature_dim

    def patch_origins(self) -> list[int]:
        """Top-left coordinates of the grid's rows/columns: the grid spans the frame edge to edge (the
        AdaFocus authors' layout)."""
        g, p = self.grid, self.patch_size
        return [int(k / (g - 1) * (self.input_size - p)) if g > 1 else (self.input_size - p) // 2 for k in range(g)]

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """One input of the shape the set's module takes: a frame, a patch or a snippet."""
        if self.output == "clip":
            return torch.zeros(batch, 3, self.backbone.clip_frames, self.input_size, self.input_size)
        side = self.patch_size if self.output == "grid" else self.input_size
        return torch.zeros(batch, 3, side, side)

    # -------------------------------------------------------------- preprocessing
    # One decode serves every set of a run: each frame's short side is scaled to the canvas and its
    # central square kept (pipeline.decode); each set then takes its central crop of that square
    # and resizes it to its input size. `eval` crops as the weights' evaluation transform does
    # (docs/contracts/cache.md, "Preprocessing"); `full` keeps the whole square (c2f before 2026-11).

    def resize_size(self, preprocess: str) -> int:
        """The short side the set's evaluation transform resizes to (its input size for `full`)."""
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}, not {preprocess!r}")
        return round(self.input_size * self.backbone.resize_ratio) if preprocess == "eval" else self.input_size

    def crop(self, x: torch.Tensor, preprocess: str) -> torch.Tensor:
        """The set's central crop of squares [..., Q, Q] (Q: the canvas), resized to its input size."""
        side = x.shape[-1]
        crop = round(side * self.input_size / self.resize_size(preprocess))
        if crop != side:
            top = int(round((side - crop) / 2))
            x = x[..., top:top + crop, top:top + crop]
        if crop != self.input_size:
            shape = x.shape
            x = F.interpolate(x.reshape(-1, *shape[-3:]), size=self.input_size, mode="bilinear", antialias=True,
                              align_corners=False).reshape(*shape[:-2], self.input_size, self.input_size)
        return x

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[n, 3, ...] in [0, 1] -> the backbone's normalised input."""
        shape = (1, 3) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.backbone.mean, device=x.device, dtype=x.dtype).view(shape)
        std = torch.tensor(self.backbone.std, device=x.device, dtype=x.dtype).view(shape)
        return (x - mean) / std

    def prepare(self, squares: torch.Tensor, preprocess: str = "eval") -> torch.Tensor:
        """Decoded squares [n, Q, Q, 3] uint8 -> the set's normalised input [n, 3, size, size]."""
        x = self.crop(squares.permute(0, 3, 1, 2).float().div_(255), preprocess)
        return self.normalise(x)

    def prepare_clips(self, clips: torch.Tensor, preprocess: str = "eval") -> torch.Tensor:
        """Decoded snippets [n, T, Q, Q, 3] uint8 -> [n, 3, T, size, size], normalised."""
        x = self.crop(clips.permute(0, 1, 4, 2, 3).float().div_(255), preprocess)    # [n, T, 3, size, size]
        return self.normalise(x.transpose(1, 2))

    def cut_patches(self, x: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Prepared frames [n, 3, S, S] -> their grid's patches: every candidate, row-major
        ([n * G * G, 3, P, P], one gather), or with `candidates` [n] only that one per frame ([n, 3, P, P])."""
        origins = torch.tensor(self.patch_origins(), device=x.device)
        offsets = torch.arange(self.patch_size, device=x.device)
        n, g, p = len(x), self.grid, self.patch_size
        if candidates is None:
            index = origins[:, None] + offsets[None, :]                               # [G, P]
            return x[:, :, index][..., index].permute(0, 2, 4, 1, 3, 5).reshape(n * g * g, 3, p, p)
        rows = (origins[candidates // g][:, None] + offsets[None, :])                  # [n, P]
        cols = (origins[candidates % g][:, None] + offsets[None, :])
        frame = torch.arange(n, device=x.device)[:, None, None]
        return x.permute(0, 2, 3, 1)[frame, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
