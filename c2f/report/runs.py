"""The finished runs a report reads, the one a table row takes among several, and readable names."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..config import TrainConfig, defaults_of, variant_keys
from ..heads import method
from ..rundir import RunDir, finished_runs


@dataclass
class Run:
    path: Path
    settings: dict          # flat settings, and `patch_size` for a method reading a patch grid
    metrics: dict
    manifest_sha256: str
    feature_sets: dict      # role -> {name, attrs, frame_shape}, as config.json records them

    @property
    def source(self) -> tuple[str, str]:
        return self.manifest_sha256, str(Path(self.settings["cache"]).resolve())

    @property
    def method(self) -> str:
        return self.settings["method"]

    @property
    def files(self) -> RunDir:
        """The run folder's files, read through c2f.rundir."""
        return RunDir(self.path)


def patch_size(settings: dict) -> int | None:
    """P of the patch grid a run reads (from the grid set's name, `...-gridGxP`), None for other methods."""
    record = method(settings["method"])
    role = record.role_of_kind("grid")
    match = re.search(r"-grid\d+x(\d+)$", str(settings[record.roles[role].option])) if role else None
    return int(match[1]) if match else None


def find_runs(runs_dir: str | Path) -> list[Run]:
    """Every finished run under runs_dir, its settings as TrainConfig reads them (defaults filled in)."""
    runs = []
    for run, config, metrics in finished_runs(runs_dir):
        settings = TrainConfig.from_dict(config["settings"]).to_dict()
        runs.append(Run(run.path, settings | {"patch_size": patch_size(settings)}, metrics,
                        config.get("manifest_sha256", ""), config.get("feature_sets", {})))
    return runs


NOT_SETTINGS = ("manifest", "cache", "out", "coarse", "fine", "glance", "focus", "device", "overwrite", "progress")


def differing(settings: dict, every: bool = False) -> dict:
    """The settings of a run that make it a variant (every: any setting but paths, sets and how it was
    invoked) and differ from its method's defaults."""
    defaults = defaults_of(settings["method"])
    keys = [k for k in defaults if k not in NOT_SETTINGS] if every else variant_keys()
    return {k: settings[k] for k in keys if k in settings and k in defaults and settings[k] != defaults[k]}


def _distance_from_defaults(run: Run, fixed: dict) -> int:
    return sum(1 for k in differing(run.settings) if k not in fixed and k != "frames")


def select(runs: list[Run], match: dict) -> Run | None:
    """The run with these settings; among several, the one closest to the defaults, then the newest."""
    found = [r for r in runs if all(r.settings.get(k) == v for k, v in match.items())]
    if not found:
        return None
    return min(found, key=lambda r: (_distance_from_defaults(r, match), -r.files.finished_at))


def readable_name(settings: dict) -> str:
    """A folder name a person can read: the method, then each setting that differs from its defaults
    (`liteeval-gamma_0.1`, `uniform-fine_dpn107_224-frames_10`, `liteeval-no_sync`)."""
    parts = [settings["method"]]
    for key, value in differing(settings).items():
        if isinstance(value, bool):
            parts.append(key if value else f"no_{key}")
        else:
            parts.append(f"{key}_{value}")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)).strip("._-")
