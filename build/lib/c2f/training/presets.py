"""The papers' settings, shipped: `c2f train-head --preset NAME` starts from one (a config file and
flags given beside it override it). Each cites where its numbers come from; what neither the paper
nor the authors' code states is said so.

A settings file (`--config FILE`, YAML or JSON) holds the same flat mapping as a preset; a run's
config.json is one (its `settings`), so `--config RUN/config.json` repeats the run."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import SettingsError


@dataclass(frozen=True)
class Preset:
    settings: dict
    source: str


_LITEEVAL = {"method": "liteeval", "coarse": "mobilenet_v2@112", "fine": "resnet101@224", "gamma": 0.05, "lam": 2.0,
             "lr": 1e-4, "weight_decay": 1e-4, "epochs": 100}
_LITEEVAL_SOURCE = ("LiteEval Sec. 4.1 (Adam at 1e-4, lambda 2, the batch and hidden sizes of each dataset), Table 7 "
                    "(gamma 0.05); weight decay 1e-4 and gradient clip 5 from the released main.py. The number of "
                    "epochs is stated in neither: 100, past the released code's last rate step (epoch 80)")
_ADAFOCUS = {"method": "adafocus", "glance": "mobilenet_v2@224-map", "focus": "resnet50@224-grid7x128", "frames": 16,
             "adafocus_hidden": 1024, "policy": "learned", "stage2": "ppo", "reward": "adafocus", "ppo_epochs": 1,
             "stage_epochs": [50, 50, 10], "stage_lrs": [0.05, 3e-4, 5e-3], "batch_size": 64, "weight_decay": 1e-4}
_ADAFOCUS_SOURCE = ("AdaFocus Sec. 4.1 and Appendix B (16 frames, GRU 1024, 7 x 7 candidates of 128 px; SGD with "
                    "Nesterov momentum and cosine annealing, batch 64, L2 1e-4; stages of 50, 50 and 10 epochs; "
                    "classifier rates 0.05 in stage I and 5e-3 in stage III for ActivityNet and FCVID) and the "
                    "authors' code (models/ppo.py: Adam at 3e-4, one PPO update per rollout). The CNNs stay "
                    "frozen on a feature cache")

PRESETS: dict[str, Preset] = {
    "liteeval-activitynet": Preset(_LITEEVAL | {"coarse_hidden": 64, "fine_hidden": 512, "batch_size": 128},
                                   _LITEEVAL_SOURCE),
    "liteeval-fcvid": Preset(_LITEEVAL | {"coarse_hidden": 512, "fine_hidden": 2048, "batch_size": 256},
                             _LITEEVAL_SOURCE),
    "liteeval-kinetics": Preset(_LITEEVAL | {"coarse_hidden": 1024, "fine_hidden": 2048, "batch_size": 512},
                                _LITEEVAL_SOURCE),
    "lstm-activitynet": Preset({"method": "lstm", "fine": "resnet101@224", "frames": 25, "fine_hidden": 512,
                                "lr": 1e-4, "batch_size": 128, "weight_decay": 1e-4, "epochs": 100},
                               "LiteEval Sec. 4.1 (the LSTM baseline: 25 frames, LiteEval's fine RNN size and "
                               "optimiser on ActivityNet); epochs as liteeval-activitynet"),
    "uniform-activitynet": Preset({"method": "uniform", "fine": "resnet101@224", "frames": 25, "lr": 1e-4,
                                   "batch_size": 128, "weight_decay": 1e-4, "epochs": 100},
                                  "LiteEval Sec. 4.1 (UNIFORM: 25 evenly spaced frames, ResNet-101); its optimiser "
                                  "is not stated: LiteEval's"),
    "adafocus-activitynet": Preset(_ADAFOCUS, _ADAFOCUS_SOURCE),
    "adafocus-fcvid": Preset(_ADAFOCUS, _ADAFOCUS_SOURCE),
    "adafocus-minikinetics": Preset(_ADAFOCUS | {"stage_lrs": [0.05, 3e-4, 5e-4]},
                                    _ADAFOCUS_SOURCE + "; stage III at 5e-4 for Mini-Kinetics (Appendix B)"),
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise SettingsError(f"unknown preset {name!r}", f"choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name].settings)


def read_settings_file(path: str | Path) -> dict:
    """A flat mapping of settings from a YAML or JSON file; a run's config.json gives its `settings`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"{path}: cannot be read ({err.__class__.__name__})") from None
    import yaml
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:          # both say where (line, column)
        raise SettingsError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} "
                            f"({' '.join(str(err).split())[:200]})") from None
    if isinstance(data, dict) and isinstance(data.get("settings"), dict):
        data = data["settings"]
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings (method: ..., manifest: ..., ...)")
    return data
