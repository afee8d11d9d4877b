"""The embedded demo dataset: real H.264 files whose class survives at 224 px and not at 112 px."""
import csv
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from pipeline.decode import Sampling, decode_samples
from c2f.demo.videos import (CLASSES, TEXTURE_AMPLITUDE, DemoVideoConfig, SquarePath, plan, render_video,
                                  texture, write_mp4)
from pipeline.core.manifest import read_manifest


def resize_112(image: np.ndarray) -> torch.Tensor:
    """Phase one's resize from the 224 px square (FeatureSet.prepare)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=112, mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize("name", CLASSES)
def test_every_texture_has_zero_mean_and_vanishes_at_112(name):
    pattern = texture(name, 56, TEXTURE_AMPLITUDE)
    assert abs(pattern.mean()) < 1e-9
    small = resize_112(np.repeat(np.pad(pattern, 84)[..., None], 3, axis=2))
    assert small.abs().max() < 2.0       # of 65: the fade keeps the border from leaking


def test_decoded_classes_differ_at_224_and_not_at_112(tmp_path):
    cfg = DemoVideoConfig(out=str(tmp_path))
    decoded = {}
    for name in CLASSES:
        # the same seed: the same background, square path and timing; only the texture differs
        rng = np.random.default_rng(3)
        path = SquarePath.draw(rng, cfg)
        write_mp4(tmp_path / f"{name}.mp4", render_video(rng, name, path, cfg), cfg.fps)
        samples = list(decode_samples(tmp_path / f"{name}.mp4", Sampling(num_frames=cfg.num_frames), 256))
        samples = [replace(s, image=s.image[16:240, 16:240]) for s in samples]     # phase one's central 224
        assert len(samples) == cfg.num_frames and 7 <= path.length <= 11
        t = path.first + 2
        decoded[name] = samples[t].image
        y, x = path.corner(t)
        inside = decoded[name][y + 10:y + 46, x + 10:x + 46, 0].astype(float)    # away from the faded border
        if name != "flat":
            assert inside.std() > 30          # the 1-pixel texture survived H.264, where the path says
    for name in CLASSES[1:]:
        at_224 = np.abs(decoded[name].astype(float) - decoded["flat"]).max()
        at_112 = (resize_112(decoded[name]) - resize_112(decoded["flat"])).abs().max().item()
        assert at_224 > 60 and at_112 < 6, (name, at_224, at_112)     # 6: H.264's own noise


def test_the_shipped_manifest_is_the_generators():
    shipped = REPO / "data_manifests" / "demo" / "manifest.csv"
    with open(shipped, newline="", encoding="utf-8") as handle:
        assert list(csv.DictReader(handle)) == plan(DemoVideoConfig(out=str(shipped.parent)))
    manifest = read_manifest(shipped, check_paths=False)
    assert manifest.classes() == list(CLASSES) and len(manifest.split("train")) == 150
    row = plan(DemoVideoConfig(out=""))[7]
    path = SquarePath.from_columns(row, fps=8)
    assert path.columns(8) == {k: row[k] for k in ("square_from", "square_to", "square_path")}
