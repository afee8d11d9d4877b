"""The papers' settings, shipped: `c2f train-head --preset NAME` starts from one (a config file and
flags given beside it override it). Each preset is part of its method's record (c2f.methods.Preset,
registered beside the head), and cites where its numbers come from; what neither the paper nor the
authors' code states is said so. A preset's optimiser is the paper's exactly (`--optimizer adam`,
`sgd` or `sgd-nesterov`, as the paper trained: no width-scaled rate).

A settings file (`--config FILE`, YAML or JSON) holds the same flat mapping as a preset; a run's
config.json is one (its `settings`), so `--config RUN/config.json` repeats the run."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.errors import SettingsError

from ..heads import methods
from ..methods import Preset

PRESETS: dict[str, Preset] = {name: p for record in methods().values() for name, p in record.presets.items()}


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
