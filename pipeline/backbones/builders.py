"""The networks, built by the library that defines them: torchvision (`weights=` enums, fetched into the
torch hub cache), timm (its pretrained configs, from the Hugging Face hub), pytorchvideo (SlowFast and its
Kinetics checkpoint); and the adapters that read a feature out of each (a trunk's map, a pooled vector)."""
from __future__ import annotations

import os

import torch
from torch import nn

from ..core.errors import MissingLibraryError, SettingsError, WeightsError
from ..core.files import error_line
from .weights import fetch, hub_checkpoint_dir, offline

SLOWFAST_ALPHA = 4      # the slow pathway reads every 4th of the fast pathway's frames
SLOWFAST_URL = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth"


def require(package: str, extra: str, what: str):
    """The optional package. Its library not installed (a plain `pip install c2f`): MissingLibraryError,
    naming the extra that installs it; installed but failing to import: a one-line SettingsError."""
    import importlib
    import importlib.util
    library = package.partition(".")[0]
    if importlib.util.find_spec(library) is None:
        raise MissingLibraryError(f"{what} needs {library}, which is not installed", library, extra)
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise SettingsError(f"{what} needs {package}, which is installed but does not import ({error_line(err)})",
                            f"reinstall it: pip install --force-reinstall 'c2f[{extra}]'") from None


def torchvision_builder(builder_name: str, enum_name: str | None = None, weights_name: str | None = None):
    """A torchvision model by name; `imagenet` its published weights: `enum_name.weights_name` (the
    presets pin the V1 weights the papers used), else the enum's DEFAULT."""
    def build(weights: str | None) -> nn.Module:
        import torchvision
        if weights != "imagenet":
            return torchvision.models.get_model(builder_name, weights=None)
        enum = (getattr(torchvision.models, enum_name) if enum_name
                else torchvision.models.get_model_weights(builder_name))
        chosen = getattr(enum, weights_name) if weights_name else enum.DEFAULT
        fetch(chosen.url)        # downloaded (hash-checked) unless cached; torchvision then reads the cache
        if enum_name is None:
            return torchvision.models.get_model(builder_name, weights=chosen)
        # A preset (a ResNet, MobileNetV2), whose builder, given weights, only sets the classes: built on the
        # meta device and handed the checkpoint's own tensors, it holds one copy of the weights while
        # loading, not a random one beside the checkpoint (the process's peak memory: bench/peer_video_features.py).
        with torch.device("meta"):
            model = torchvision.models.get_model(builder_name, weights=None, num_classes=len(chosen.meta["categories"]))
        state = chosen.get_state_dict(progress=True, check_hash=True, map_location="cpu", weights_only=True)
        model.load_state_dict(state, assign=True)
        return model
    return build


def timm_builder(model_name: str):
    """A timm model; `imagenet` its default pretrained weights (timm's own download from the Hugging
    Face hub, or a file of that name in the torch hub cache; offline: the local caches only)."""
    def build(weights: str | None) -> nn.Module:
        timm = require("timm", "timm", model_name)
        if weights != "imagenet":
            return timm.create_model(model_name, pretrained=False)
        cfg = timm.create_model(model_name, pretrained=False).pretrained_cfg
        for ext in (".safetensors", ".pth", ".bin"):
            local = hub_checkpoint_dir() / f"{cfg['architecture']}.{cfg['tag']}{ext}"
            if local.exists():
                return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay={"file": str(local)})
        if offline():
            os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            return timm.create_model(model_name, pretrained=True)
        except Exception as err:  # noqa: BLE001 - any hub failure: not cached here, and not downloadable now
            raise WeightsError(f"pretrained weights for {model_name} could not be fetched (hub id "
                               f"{cfg.get('hf_hub_id')}: {error_line(err)})",
                               f"put {cfg['architecture']}.{cfg['tag']}.safetensors into {hub_checkpoint_dir()}, "
                               "or pass --weights PATH") from None
    return build


def slowfast_builder(weights: str | None) -> nn.Module:
    """pytorchvideo's SlowFast-R50 8x8; `imagenet` means its Kinetics-400 checkpoint (its name has no
    hash to check: pytorchvideo publishes none)."""
    hub = require("pytorchvideo.models.hub", "slowfast", "slowfast_r50")
    model = hub.slowfast_r50(pretrained=False)
    if weights == "imagenet":
        checkpoint = torch.load(fetch(SLOWFAST_URL, check_hash=False), map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint.get("model_state", checkpoint))
    return model


class TimmTrunk(nn.Module):
    """A timm model up to its last feature map (`forward_features`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


class TimmPooled(nn.Module):
    """A timm model's pooled, pre-logit feature (`forward_head(..., pre_logits=True)`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class SlowFastPooled(nn.Module):
    """SlowFast up to its pooled 2304-d feature: the head with its projection removed."""

    def __init__(self, model):
        super().__init__()
        model.blocks[-1].proj = nn.Identity()
        model.blocks[-1].dropout = nn.Identity()
        self.model = model

    def forward(self, clips):                       # clips: [B, 3, 32, H, W], fast-pathway frames
        slow = clips[:, :, ::SLOWFAST_ALPHA]
        return self.model([slow, clips])


def resnet_trunk(model):
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                         model.layer1, model.layer2, model.layer3, model.layer4)
