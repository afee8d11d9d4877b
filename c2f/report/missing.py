"""The command that would fill a row no run fills: `c2f train-head` with the row's settings, the
feature sets the runs used, a readable folder name that no run holds yet, and absolute paths;
preceded by the `c2f extract` it needs when a set it reads is not in the cache, complete (the
cache's sampling, decoding and weights), so that missing.txt's lines run as they are."""
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


def at_default_sizes(used: str, default: str) -> str:
    """A role of several sets (AR-Net's resolutions) filled from runs that read one: that set's backbone at
    each input size of the role's default (`resnet18@224` with `resnet50@224,resnet34@168,resnet18@112`
    gives `resnet18@224,resnet18@168,resnet18@112`)."""
    backbone = SPEC_RE.match(used)["name"]
    return ",".join(f"{backbone}@{SPEC_RE.match(name)['size'] or 224}" for name in default.split(","))


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
            if role.many and "," not in settings[role.option]:     # the cache's backbone at the default's sizes
                settings[role.option] = at_default_sizes(settings[role.option], role.default)
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
    needed = [name for r in record.roles.values() for name in r.sets(full[r.option])]
    absent = [s for s in needed if not (Path(cache) / s / "index.json").exists()]
    extract = shlex.join(extract_args(absent, runs, manifest, cache)) + " && " if absent else ""
    return extract + shlex.join(["c2f", *args])


def extract_args(absent: list[str], runs: list[Run], manifest: str, cache: str) -> list[str]:
    """`c2f extract` adding the absent sets to the cache as if extracted with its sets: the same sampling,
    seek mode, preprocessing, precision and decoded square (--canvas), and for a set of a backbone the cache
    already holds, that set's weights (a fine-tuned checkpoint serves its other sizes too)."""
    sets = {info["name"]: info["attrs"] for run in runs for info in run.feature_sets.values()}
    first = next(iter(sets.values()))
    sampling = ["--num-frames", str(first["num_frames"])] if "num_frames" in first else ["--fps", str(first["fps"])]
    args = ["c2f", "extract", "--manifest", manifest, "--out", cache, *[a for s in absent for a in ("--backbone", s)],
            *sampling, "--seek", str(first.get("seek", "exact")), "--preprocess", str(first.get("preprocess", "eval")),
            "--precision", str(first.get("precision", "fp32"))] + (["--canvas", str(first["canvas"])]
                                                                 if "canvas" in first else [])
    for name in absent:
        backbone = SPEC_RE.match(name)["name"]
        same = [a for a in sets.values() if a.get("backbone") == backbone]
        weights = same[0].get("weights_file") or same[0]["weights"] if same else "imagenet"
        args += ["--weights", f"{name}={weights}"]
    return args
