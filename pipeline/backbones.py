"""Backbone registry: a name -> (builder, default input size, kind), like timm's model registry.

A *feature set* (DESIGN.md's FEATURE_SET) is a backbone plus how it is fed and what is kept:

    mobilenet_v2@112             pooled vector per frame
    resnet101@224, resnet101     pooled vector per frame (default size 224)
    mobilenet_v2@224-map         the last spatial map per frame (the AdaFocus glance)
    resnet50@224-grid7x128       pooled vector per candidate patch: G x G patches of P px cut
                                 from the 224 px frame (the AdaFocus focus)
    slowfast_r50                 pooled vector per 8x8 snippet centred on each sampled time

Every 2D backbone is reduced to a *trunk* that returns its last feature map; the pooled
feature is the global average of that map, which is exactly what each model's own head does.
"""
from __future__ import annotations

import hashlib
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

# SlowFast 8x8: the fast pathway reads 32 frames at stride 2 over a 64-frame window, the slow
# pathway every 4th of those (8 frames at stride 8).
CLIP_WINDOW = 64
CLIP_STRIDE = 2
SLOWFAST_ALPHA = 4


class WeightsError(RuntimeError):
    """Pretrained weights that cannot be loaded; the message says what file to put where."""


@dataclass(frozen=True)
class Backbone:
    name: str
    kind: str                      # "image" (per frame) or "clip" (per snippet)
    default_size: int
    feature_dim: int
    map_channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build_full: Callable[[str | None], nn.Module]   # weights: None | "imagenet" -> full classifier
    trunk_of: Callable[[nn.Module], nn.Module]      # full model -> module returning the feature map
    classifier_prefixes: tuple[str, ...]             # state-dict keys of the classification head


REGISTRY: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    REGISTRY[backbone.name] = backbone
    return backbone


# ------------------------------------------------------------------ weights

def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _require_local(url: str) -> Path:
    """torch.hub would download `url`; we are offline, so the file must already be in the cache."""
    path = hub_checkpoint_dir() / os.path.basename(url)
    if not path.exists():
        raise WeightsError(f"pretrained weights not found: put {path.name} (from {url}) "
                           f"into {path.parent} or pass --weights PATH")
    return path


def _torchvision(builder_name: str, enum_name: str):
    import torchvision

    def build(weights: str | None) -> nn.Module:
        builder = getattr(torchvision.models, builder_name)
        if weights != "imagenet":
            return builder(weights=None)
        enum = getattr(torchvision.models, enum_name).IMAGENET1K_V1
        _require_local(enum.url)
        return builder(weights=enum)       # torch.hub finds the cached file and does not download
    return build


def _timm(model_name: str):
    def build(weights: str | None) -> nn.Module:
        import timm
        if weights != "imagenet":
            return timm.create_model(model_name, pretrained=False)
        cfg = timm.create_model(model_name, pretrained=False).pretrained_cfg
        for ext in (".safetensors", ".pth", ".bin"):
            local = hub_checkpoint_dir() / f"{cfg['architecture']}.{cfg['tag']}{ext}"
            if local.exists():
                return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay={"file": str(local)})
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            return timm.create_model(model_name, pretrained=True)
        except Exception as err:  # noqa: BLE001 - any hub failure means "not cached"
            raise WeightsError(f"pretrained weights not found for {model_name}: put "
                               f"{cfg['architecture']}.{cfg['tag']}.safetensors (hub id {cfg.get('hf_hub_id')}) "
                               f"into {hub_checkpoint_dir()} or pass --weights PATH ({err.__class__.__name__})") from None
    return build


def _slowfast(weights: str | None) -> nn.Module:
    from pytorchvideo.models.hub import slowfast_r50
    model = slowfast_r50(pretrained=False)
    if weights == "imagenet":   # "pretrained" for a video model means its Kinetics-400 checkpoint
        url = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth"
        checkpoint = torch.load(_require_local(url), map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint.get("model_state", checkpoint))
    return model


class _TimmTrunk(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


class _SlowFastPooled(nn.Module):
    """SlowFast up to its pooled 2304-d feature: the head with its projection removed."""

    def __init__(self, model):
        super().__init__()
        model.blocks[-1].proj = nn.Identity()
        model.blocks[-1].dropout = nn.Identity()
        self.model = model

    def forward(self, clips):                       # clips: [B, 3, 32, H, W], fast-pathway frames
        slow = clips[:, :, ::SLOWFAST_ALPHA]
        return self.model([slow, clips])


def _resnet_trunk(model):
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                         model.layer1, model.layer2, model.layer3, model.layer4)


# resnet18 is not in the papers: it is the demo's fine backbone, narrow enough to fine-tune
# and run on a 2-core CPU in minutes (README, "make demo").
for _name, _enum, _dim in (("resnet18", "ResNet18_Weights", 512), ("resnet50", "ResNet50_Weights", 2048),
                           ("resnet101", "ResNet101_Weights", 2048)):
    register(Backbone(_name, "image", 224, _dim, _dim, IMAGENET_MEAN, IMAGENET_STD,
                      _torchvision(_name, _enum), _resnet_trunk, ("fc.",)))
register(Backbone("mobilenet_v2", "image", 224, 1280, 1280, IMAGENET_MEAN, IMAGENET_STD,
                  _torchvision("mobilenet_v2", "MobileNet_V2_Weights"), lambda m: m.features, ("classifier.",)))
register(Backbone("dpn107", "image", 224, 2688, 2688, (124 / 255, 117 / 255, 104 / 255), (0.2348,) * 3,
                  _timm("dpn107"), _TimmTrunk, ("classifier.",)))
register(Backbone("slowfast_r50", "clip", 256, 2304, 0, KINETICS_MEAN, KINETICS_STD,
                  _slowfast, _SlowFastPooled, ("blocks.6.proj.",)))


# ------------------------------------------------------------------ feature sets

SPEC_RE = re.compile(r"^(?P<name>[a-z0-9_]+)(?:@(?P<size>\d+))?(?:-(?P<out>map|grid(?P<grid>\d+)x(?P<patch>\d+)))?$")


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
            side = -(-self.input_size // 32)    # every registered 2D trunk has stride 32
            return (self.backbone.map_channels, side, side)
        if self.output == "grid":
            return (self.grid * self.grid, self.backbone.feature_dim)
        return (self.backbone.feature_dim,)

    def patch_origins(self) -> list[int]:
        """Top-left coordinates of the grid's rows/columns: spans the frame edge to edge (NOTES.md)."""
        g, p = self.grid, self.patch_size
        return [int(k / (g - 1) * (self.input_size - p)) if g > 1 else (self.input_size - p) // 2 for k in range(g)]


def parse_spec(spec: str) -> FeatureSet:
    match = SPEC_RE.match(spec.strip())
    if not match:
        raise ValueError(f"bad feature set {spec!r}: expected NAME[@SIZE][-map|-gridGxP], e.g. resnet50@224-grid7x128")
    name = match["name"]
    if name not in REGISTRY:
        raise ValueError(f"unknown backbone {name!r} in {spec!r}; known: {', '.join(sorted(REGISTRY))}")
    backbone = REGISTRY[name]
    size = int(match["size"] or backbone.default_size)
    out = match["out"]
    if backbone.kind == "clip":
        if out:
            raise ValueError(f"{spec!r}: {name} gives one pooled vector per snippet; -map/-grid do not apply")
        return FeatureSet(f"{name}@{size}" if match["size"] else name, backbone, size, "clip")
    if out == "map":
        return FeatureSet(f"{name}@{size}-map", backbone, size, "map")
    if out:
        grid, patch = int(match["grid"]), int(match["patch"])
        if grid < 1 or not 32 <= patch <= size:
            raise ValueError(f"{spec!r}: need a grid of at least 1 and 32 <= patch <= {size}")
        return FeatureSet(f"{name}@{size}-grid{grid}x{patch}", backbone, size, "grid", grid, patch)
    return FeatureSet(f"{name}@{size}", backbone, size, "pooled")


# ------------------------------------------------------------------ building

class FeatureNet(nn.Module):
    """trunk -> map, or its global average (the pooled feature)."""

    def __init__(self, trunk: nn.Module, pooled: bool):
        super().__init__()
        self.trunk, self.pooled = trunk, pooled

    def forward(self, x):
        out = self.trunk(x)
        return out.mean(dim=(-2, -1)) if self.pooled and out.dim() == 4 else out


def example_input(fs: FeatureSet, batch: int = 1) -> torch.Tensor:
    """One input of the shape the set's module takes: a frame, a patch or a snippet."""
    if fs.output == "clip":
        return torch.zeros(batch, 3, CLIP_WINDOW // CLIP_STRIDE, fs.input_size, fs.input_size)
    side = fs.patch_size if fs.output == "grid" else fs.input_size
    return torch.zeros(batch, 3, side, side)


def _load_checkpoint(model: nn.Module, path: Path, classifier_prefixes: tuple[str, ...]) -> None:
    """Load a state dict (weights_only) into the full model; the classifier head may differ."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    head = lambda k: k.startswith(classifier_prefixes)  # noqa: E731
    state = {k: v for k, v in state.items() if not (head(k) and (k not in own or own[k].shape != v.shape))}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not head(k)]
    if missing or result.unexpected_keys:
        raise WeightsError(f"{path} does not fit this backbone: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")


@torch.no_grad()
def _calibrate_random_bn(model: nn.Module, fs: FeatureSet, seed: int) -> None:
    """Randomly initialised deep nets with unit BN statistics overflow fp16 (ResNet-101 reaches
    ~1e5) or underflow it (MobileNetV2 ~1e-8). For `random` weights only, set BN running
    statistics from one batch of seeded noise, so that features stay in a storable range.
    Deterministic: fixed seed, fixed input."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None          # cumulative average over this single batch
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(example_input(fs, 4).shape, generator=generator)
    model.train()
    model(x)
    model.eval()


def weights_tag(weights: str) -> str:
    """The shard attribute: imagenet, random, or the checkpoint's sha256."""
    if weights in ("imagenet", "random"):
        return weights
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(fs: FeatureSet, weights: str = "random") -> nn.Module:
    """The frozen module for a feature set, in eval mode on the CPU.

    weights: "imagenet" (torchvision/timm/pytorchvideo checkpoint from the local cache),
    "random" (seeded, reproducible) or a path to a state dict.
    """
    seed = zlib.crc32(fs.backbone.name.encode())
    torch.manual_seed(seed)          # `random` must mean the same weights in every run
    is_path = weights not in ("imagenet", "random")
    if is_path and not Path(weights).is_file():
        raise WeightsError(f"weights file not found: {weights}")
    full = fs.backbone.build_full("imagenet" if weights == "imagenet" else None)
    if is_path:
        _load_checkpoint(full, Path(weights), fs.backbone.classifier_prefixes)
    full.eval()
    # The cost of a frame is the published network's, classifier included: the papers' and
    # DESIGN.md's convention (its 1000-way head is ~0.002 GMACs of MobileNetV2's 0.08).
    example = example_input(fs)
    gmacs = count_gmacs(full, [example[:, :, ::SLOWFAST_ALPHA], example] if fs.output == "clip" else example)
    trunk = fs.backbone.trunk_of(full)
    module = trunk if fs.output == "clip" else FeatureNet(trunk, pooled=fs.output != "map")
    if weights == "random":
        _calibrate_random_bn(module, fs, seed)
    module.eval().requires_grad_(False)
    module.gflops_per_frame = gmacs      # a plain attribute, not a parameter or buffer
    return module


def count_gmacs(module: nn.Module, example: torch.Tensor) -> float:
    """Multiply-accumulates (10^9) of one forward, counted by torch's FlopCounterMode (2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(example)
    return counter.get_total_flops() / 2 / 1e9


def gflops_per_frame(fs: FeatureSet) -> float:
    """Counted GMACs for one frame (a patch for a grid, a snippet for SlowFast)."""
    return build(fs, "random").gflops_per_frame


# The feature sets the two papers use, with the GFLOPs (multiply-adds) the papers state, for
# display next to the counted values (`c2f flops`). Never used for accounting.
PAPER_GFLOPS = {
    "mobilenet_v2@112": 0.08,              # LiteEval, coarse
    "resnet101@224": 7.82,                 # LiteEval, fine
    "dpn107@224": 18.34,                   # LiteEval, fine
    "slowfast_r50": 65.71,                 # LiteEval, per 8x8 snippet
    "mobilenet_v2@224-map": 0.2995,        # AdaFocus glance (authors' code)
    "resnet18@224": None,                  # the demo's fine backbone
    "resnet50@224": None,
    "resnet50@224-grid7x96": None,         # AdaFocus patches: per patch, no per-patch value printed
    "resnet50@224-grid7x128": None,
    "resnet50@224-grid7x160": None,
    "resnet50@224-grid7x192": None,
}


def flops_table() -> list[dict]:
    """Counted GMACs per frame (per patch, per snippet) of every supported feature set."""
    rows = []
    for spec, paper in PAPER_GFLOPS.items():
        fs = parse_spec(spec)
        rows.append({"feature_set": fs.name, "input": list(example_input(fs).shape[1:]),
                     "feature_shape": list(fs.feature_shape), "gflops_counted": gflops_per_frame(fs),
                     "gflops_paper": paper})
    return rows
