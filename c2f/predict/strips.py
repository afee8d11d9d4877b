"""`c2f predict --visualize`: one PNG strip per video, to look at before reading tables.

Each sampled frame is a thumbnail of what the fine feature set sees (its crop of the decoded
square); where the expensive network ran on the whole frame the thumbnail is outlined, and an
AdaFocus patch is drawn as a box; the title gives the prediction.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..methods import role_of

THUMB, PER_ROW, BORDER, TITLE = 96, 12, 3, 18
FINE_COLOUR = (255, 140, 0)


def strip_name(video_id: str) -> str:
    """A file name for any video id: its safe characters and a hash (ids never reach the file system raw)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", video_id)[:80].strip(".") or "video"
    return f"{safe}-{hashlib.sha256(video_id.encode()).hexdigest()[:8]}.png"


def _thumbnails(fs, preprocess: str, squares: torch.Tensor) -> list[Image.Image]:
    views = fs.crop(squares.permute(0, 3, 1, 2).float(), preprocess).clamp(0, 255).round().to(torch.uint8)
    return [Image.fromarray(v.permute(1, 2, 0).numpy()).resize((THUMB, THUMB), Image.BILINEAR) for v in views]


def strip(fs, preprocess: str, squares: torch.Tensor, fine: np.ndarray, patches: np.ndarray | None,
          title: str) -> Image.Image:
    """The strip of one video: fine [T] (1 where the expensive feature was used), patches [T] (-1: none)."""
    thumbs = _thumbnails(fs, preprocess, squares)
    columns = min(PER_ROW, len(thumbs))
    rows = -(-len(thumbs) // columns)
    step = THUMB + 2 * BORDER
    image = Image.new("RGB", (columns * step, TITLE + rows * step), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((4, 3), title, fill=(0, 0, 0))
    scale, origins = THUMB / fs.input_size, fs.patch_origins() if patches is not None else []
    for t, thumb in enumerate(thumbs):
        x, y = (t % columns) * step, TITLE + (t // columns) * step
        image.paste(thumb, (x + BORDER, y + BORDER))
        if patches is not None and patches[t] >= 0:
            top, left = origins[patches[t] // fs.grid] * scale, origins[patches[t] % fs.grid] * scale
            side = fs.patch_size * scale
            draw.rectangle([x + BORDER + left, y + BORDER + top, x + BORDER + left + side, y + BORDER + top + side],
                           outline=FINE_COLOUR, width=2)
        elif fine[t]:
            draw.rectangle([x, y, x + step - 1, y + step - 1], outline=FINE_COLOUR, width=BORDER)
    return image


def write_strips(folder: Path, predictor, batch) -> list[Path]:
    """A strip per video of a predicted batch (c2f.predict.engine.BatchResult)."""
    folder.mkdir(parents=True, exist_ok=True)
    result, written = batch.result, []
    fs = next(fs for role, fs in predictor.sets.items() if role_of(role) == "fine")    # the first of several (AR-Net)
    for i, video in enumerate(batch.videos):
        rows = slice(result.offsets[i], result.offsets[i + 1])
        patches = None if result.patches is None else result.patches[rows]
        best = int(result.scores[i].argmax())
        title = (f"{video.video_id}: {predictor.classes[best]} ({result.scores[i, best]:.2f}); "
                 f"expensive CNN on {int((result.fine_reads()[rows] > 0).sum())} of {len(video.timestamps)} frames")
        path = folder / strip_name(video.video_id)
        strip(fs, predictor.runner.preprocess, video.squares, result.fine_reads()[rows], patches, title).save(path)
        written.append(path)
    return written
