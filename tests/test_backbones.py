"""Feature-set specs, FLOP counts against the table in docs/contracts/flops.md, weights handling, pooling."""
import json
import re

import pytest
import torch
import torchvision

from conftest import REPO
from pipeline import backbones as bb
from pipeline.backbones.flops import count_key
from pipeline.core.errors import WeightsError
from pipeline.core.flops import count_gmacs


def contract_gmacs() -> dict[str, float]:
    """The counted GMACs per frame (patch, snippet) docs/contracts/flops.md states, by feature set."""
    table = {}
    for line in (REPO / "docs" / "contracts" / "flops.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        specs = re.findall(r"`([^`]+)`", cells[0])
        if len(cells) < 2 or not specs:
            continue
        # `resnet50@224-grid7x96` / `x128`: the short names continue the first one
        specs = [specs[0].rsplit("x", 1)[0] + s if s.startswith("x") else s for s in specs]
        values = [float(v) for v in re.findall(r"\d+\.\d+", cells[1])]
        if len(values) == len(specs):
            table.update(zip(specs, values))
    return table


# counted afresh in a second or two each; the others (ResNet-101, DPN-107, SlowFast, the larger patches)
# take many seconds on this project's CPUs
FRESH = ["mobilenet_v2@112", "mobilenet_v2@224-map", "resnet50@224-grid7x96"]


@pytest.mark.parametrize("spec", FRESH)
def test_gflops_are_counted_afresh_on_the_published_network(spec, tmp_path, monkeypatch):
    """With no count of this set under its key (set, torch and library versions: another torch's is not
    one), its cost is counted from its published network, classifier included, on one frame (a patch for
    a grid), as torchvision's model counted here and the contract's table say; then kept under its key."""
    monkeypatch.setenv("C2F_CACHE", str(tmp_path))
    fs = bb.parse_spec(spec)
    another_torch = count_key(fs).replace("|torch ", "|torch 0.0+")
    (tmp_path / "gflops.json").write_text(json.dumps({another_torch: 7.0}))
    counted = bb.gflops_per_frame(fs)
    side = fs.patch_size or fs.input_size
    reference = count_gmacs(torchvision.models.get_model(fs.backbone.name).eval(), torch.zeros(1, 3, side, side))
    assert counted == pytest.approx(reference, rel=1e-9)
    assert counted == pytest.approx(contract_gmacs()[spec], abs=1e-4)       # the table has 4 decimals
    assert json.loads((tmp_path / "gflops.json").read_text()) == {another_torch: 7.0, count_key(fs): counted}


def test_a_kept_count_is_read_back_under_its_key(tmp_path, monkeypatch):
    """A count kept under the set's key is what is read: nothing is counted."""
    monkeypatch.setenv("C2F_CACHE", str(tmp_path))
    fs = bb.parse_spec("resnet101@224")
    (tmp_path / "gflops.json").write_text(json.dumps({count_key(fs): 123.0}))
    assert bb.gflops_per_frame(fs) == 123.0


@pytest.mark.parametrize("spec", ["resnet101@224", "dpn107@224", "slowfast_r50", "resnet50@224-grid7x128",
                                  "resnet50@224-grid7x160", "resnet50@224-grid7x192"])
def test_costly_sets_match_the_contracts_table(spec):
    """The papers' other sets, as this machine counted them once per library version (C2F_CACHE): costly
    to count, so not afresh here."""
    pytest.importorskip({"dpn107@224": "timm", "slowfast_r50": "pytorchvideo"}.get(spec, "torchvision"))
    assert bb.gflops_per_frame(bb.parse_spec(spec)) == pytest.approx(contract_gmacs()[spec], abs=1e-4)


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


@pytest.mark.parametrize("name,trunk", [("mobilenet_v2", ["features"]),
                                        ("resnet18", ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                                      "layer4"])])
def test_a_presets_pooled_feature_is_the_average_of_its_map_as_its_own_head_reads_it(name, trunk):
    """registry.py: a preset's pooled feature is the global average of its trunk's last map, which is what
    the model's own head reads. The pooled set equals the mean over the cells of the map set (the same
    seeded weights), and torchvision's own model given the trunk's weights, its classifier removed."""
    pooled, mapped = (bb.build(bb.parse_spec(spec), "random") for spec in (f"{name}@112", f"{name}@112-map"))
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        vector, cells = pooled(x), mapped(x)
    assert cells.shape == (2, *bb.parse_spec(f"{name}@112-map").feature_shape) and vector.shape == cells.shape[:2]
    assert cells.shape[-1] > 1 and not torch.allclose(cells, cells.mean((-2, -1), keepdim=True))   # a map, not flat
    torch.testing.assert_close(vector, cells.mean((-2, -1)))
    reference = torchvision.models.get_model(name).eval()
    state = {(f"{trunk[0]}.{key}" if len(trunk) == 1 else f"{trunk[int(key.split('.')[0])]}.{key.split('.', 1)[1]}"):
             value for key, value in pooled.trunk.state_dict().items()}
    missing = reference.load_state_dict(state, strict=False).missing_keys
    assert missing and all(key.startswith(("fc.", "classifier.")) for key in missing)
    setattr(reference, "fc" if hasattr(reference, "fc") else "classifier", torch.nn.Identity())
    with torch.no_grad():
        torch.testing.assert_close(vector, reference(x))


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
