"""Feature-set specs, FLOP counts against the table in docs/contracts/flops.md, weights handling."""
import pytest
import torch

from pipeline import backbones as bb
from pipeline.core.errors import WeightsError

# docs/contracts/flops.md (GMACs, batch 1).
DESIGN_GMACS = {
    "mobilenet_v2@112": 0.0822,
    "mobilenet_v2@224-map": 0.3008,
    "resnet101@224": 7.801,
    "dpn107@224": 18.30,
    "slowfast_r50": 65.71,
    "resnet50@224-grid7x96": 0.753,
    "resnet50@224-grid7x128": 1.337,
    "resnet50@224-grid7x160": 2.087,
    "resnet50@224-grid7x192": 3.005,
}


@pytest.mark.parametrize("spec", sorted(DESIGN_GMACS))
def test_counted_gflops_match_design_table(spec):
    counted = bb.gflops_per_frame(bb.parse_spec(spec))
    assert counted == pytest.approx(DESIGN_GMACS[spec], rel=0.01)


def test_spec_parsing():
    fs = bb.parse_spec("resnet50@224-grid7x128")
    assert (fs.output, fs.grid, fs.patch_size, fs.input_size, fs.feature_shape) == ("grid", 7, 128, 224, (49, 2048))
    assert bb.parse_spec("resnet101").name == "resnet101@224"
    assert bb.parse_spec("mobilenet_v2@224-map").feature_shape == (1280, 7, 7)
    assert bb.parse_spec("slowfast_r50").feature_shape == (2304,)
    # the authors' layout: candidate (i, j) starts at floor(k / (G-1) * (224 - P))
    assert fs.patch_origins() == [0, 16, 32, 48, 64, 80, 96]
    for bad in ("resnet", "vgg160@224", "resnet50@224-grid7x300", "slowfast_r50-map", "resnet50@@1"):
        with pytest.raises(ValueError):
            bb.parse_spec(bad)


def test_pretrained_weights_absent_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as err:
        bb.build(bb.parse_spec("mobilenet_v2@112"), "imagenet")
    message = str(err.value)
    assert "mobilenet_v2-b0353104.pth" in message and str(tmp_path / "hub" / "checkpoints") in message


def test_imagenet_weights_load_from_the_local_cache(tmp_path, monkeypatch):
    """A file put where the message says is used, with no network."""
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    reference = torchvision.models.mobilenet_v2()
    torch.save(reference.state_dict(), folder / "mobilenet_v2-b0353104.pth")
    module = bb.build(bb.parse_spec("mobilenet_v2@112"), "imagenet")
    assert torch.equal(module.trunk[0][0].weight, reference.features[0][0].weight)


def test_checkpoint_path_loads_with_another_classifier(tmp_path):
    import torchvision
    fine_tuned = torchvision.models.mobilenet_v2(num_classes=7)      # a user's fine-tuned backbone
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": fine_tuned.state_dict()}, path)
    module = bb.build(bb.parse_spec("mobilenet_v2@112"), str(path))
    assert torch.equal(module.trunk[0][0].weight, fine_tuned.features[0][0].weight)
    assert len(bb.weights_tag(str(path))) == 64
    torch.save({"something": torch.zeros(3)}, tmp_path / "wrong.pt")
    with pytest.raises(WeightsError):
        bb.build(bb.parse_spec("mobilenet_v2@112"), str(tmp_path / "wrong.pt"))


def test_random_weights_are_reproducible_and_in_fp16_range():
    fs = bb.parse_spec("resnet101@224")
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        a, b = bb.build(fs, "random")(x), bb.build(fs, "random")(x)
    assert torch.equal(a, b)
    assert torch.isfinite(a.half()).all() and a.abs().max() < 6e4 and a.abs().mean() > 1e-3


def test_a_count_kept_on_disk_is_read_back_only_under_the_same_rules_and_versions(tmp_path, monkeypatch):
    """A count is kept per feature set, counting rules (COUNTING) and versions of c2f, torch and the
    model's library: after a change in the counting, or another c2f, the set is counted again."""
    import json
    from pipeline.backbones import flops
    monkeypatch.setenv("C2F_CACHE", str(tmp_path))
    fs = bb.parse_spec("resnet18@64")
    counted = bb.gflops_per_frame(fs)

    def kept_is_stale():           # as a count under other rules would be
        kept = json.loads((tmp_path / "gflops.json").read_text())
        (tmp_path / "gflops.json").write_text(json.dumps({key: 123.0 for key in kept}))

    kept_is_stale()
    assert bb.gflops_per_frame(fs) == 123.0                 # nothing changed: read back, not counted
    version = flops._version
    with monkeypatch.context() as other:
        other.setattr(flops, "_version", lambda package: "99.0" if package == "c2f" else version(package))
        assert bb.gflops_per_frame(fs) == pytest.approx(counted)
    kept_is_stale()
    monkeypatch.setattr(flops, "COUNTING", flops.COUNTING + 1)
    assert bb.gflops_per_frame(fs) == pytest.approx(counted)
