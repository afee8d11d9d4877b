"""The command that would fill a row no run fills: `c2f train-head` with the row's settings, the
feature sets the runs used, a readable folder name that no run holds yet, and absolute paths;
preceded by the `c2f extract` it needs when a set it reads is not in the cache."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from pipeline.backbones.registry import SPEC_RE
from pipeline.core.options import to_args

from ..config import TrainConfig, defaults_of
from ..heads import method as method_record
from .runs import Run, readable_name


def with_patch_size(focus: str, patch: int) -> str:
    """The grid set `focus` with patches of `patch` px (same backbone, input and G)."""
    match = SPEC_RE.match(focus)
    if not match or not match["patch"]:
        return focus
    return f"{match['name']}@{match['size'] or 224}-grid{match['grid']}x{patch}"


def settings_for(match: dict, runs: list[Run]) -> dict:
    """A missing row's settings: what the row fixes, the feature sets its method reads as the runs
    used them (so the command fits the cache the runs came from), the rest left at the defaults."""
    record = method_record(match["method"])
    settings = {k: v for k, v in match.items() if k != "patch_size"}
    for role in record.roles.values():
        used = [r.settings[role.option] for r in runs
                if role.option in r.settings and method_record(r.method).role_of_kind(role.kind)]
        if role.option not in settings and used:
            settings[role.option] = max(set(used), key=used.count)
    if match.get("patch_size"):
        grid_option = record.roles[record.role_of_kind("grid")].option
        focus = settings.get(grid_option) or defaults_of(match["method"])[grid_option]
        settings[grid_option] = with_patch_size(focus, match["patch_size"])
    return settings


def free_folder(runs_dir: Path, name: str, settings: dict, taken: dict[str, str]) -> Path:
    """The folder suggested for a run of these settings: the one suggested before for the same settings
    (a run can fill rows of several tables), else runs_dir/name, or name-2, name-3 ... when a folder
    or another suggestion has it."""
    key = json.dumps(settings, sort_keys=True, default=str)
    if key not in taken:
        candidate, number = name, 1
        while (runs_dir / candidate).exists() or candidate in taken.values():
            number += 1
            candidate = f"{name}-{number}"
        taken[key] = candidate
    return runs_dir / taken[key]


def command_for(match: dict, runs: list[Run], reference: dict, runs_dir: Path, taken: dict[str, str]) -> str:
    """The commands that would fill one missing row (its run's folder is new: `taken` maps the settings
    suggested so far to their folders)."""
    settings = settings_for(match, runs)
    full = defaults_of(match["method"]) | settings
    out = free_folder(runs_dir.resolve(), readable_name(full), full, taken)
    manifest, cache = str(Path(reference["manifest"]).resolve()), str(Path(reference["cache"]).resolve())
    record = method_record(match["method"])
    values = {k: v for k, v in settings.items() if k != "method"}
    args = (["train-head", "--method", match["method"], "--manifest", manifest, "--cache", cache]
            + to_args([TrainConfig, record.settings], values) + ["--out", str(out)])
    needed = [full[r.option] for r in record.roles.values()]
    absent = [s for s in needed if not (Path(cache) / s / "index.json").exists()]
    extract = ""
    if absent:
        extract = (shlex.join(["c2f", "extract", "--manifest", manifest, "--out", cache]
                              + [arg for s in absent for arg in ("--backbone", s)]) + " ...; then ")
    return extract + shlex.join(["c2f", *args])
