"""Run directories (DESIGN.md "Runs and results"): preparing one, its config.json and
skipped.csv, and loading a finished run's head. `c2f train-head` writes them; evaluate-online,
the report and predict read them."""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from pipeline.files import atomic_write_csv, atomic_write_text, sha256_of

from .config import TrainConfig
from .heads import Head, HeadDims, build_head

RUN_FILES = ("config.json", "metrics.json", "predictions.csv", "decisions.csv", "head.pt", "checkpoint.pt",
             "lr_search.json", "skipped.csv", "online.csv")


def _same_settings(saved: dict, cfg: TrainConfig) -> bool:
    asked = json.loads(json.dumps(cfg.to_dict()))          # as config.json holds it (tuples as lists)
    ignore = ("overwrite", "progress")
    return {k: v for k, v in saved.items() if k not in ignore} == {k: v for k, v in asked.items() if k not in ignore}


def prepare_run_dir(cfg: TrainConfig) -> bool:
    """Create RUN; refuse an existing one unless --overwrite. True when an unfinished run of the
    same settings can resume from its checkpoint."""
    run = Path(cfg.out)
    if run.exists() and not run.is_dir():
        raise FileExistsError(f"--out {run} is a file, not a folder")
    if run.exists() and any(run.iterdir()):
        same = (run / "config.json").exists() and _same_settings(read_config(run)["settings"], cfg)
        if cfg.overwrite:
            for name in RUN_FILES:
                (run / name).unlink(missing_ok=True)
        elif same and (run / "checkpoint.pt").exists() and not (run / "metrics.json").exists():
            return True
        else:
            raise FileExistsError(f"{run} already holds a run; give --overwrite to replace it, or another --out")
    run.mkdir(parents=True, exist_ok=True)
    return False


def read_config(run: Path) -> dict:
    path = Path(run) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{path} cannot be read ({err.__class__.__name__}); is {run} a c2f run?") from None


def write_config(cfg: TrainConfig, sets: dict, classes: list[str], head: Head) -> None:
    """config.json: every setting (enough to rerun), the feature sets used, the manifest's sha256,
    the classes and the head's counted costs."""
    payload = {"settings": cfg.to_dict(),
               "feature_sets": {role: {"name": info.name, "attrs": info.attrs, "frame_shape": list(info.frame_shape)}
                                for role, info in sets.items()},
               "manifest_sha256": sha256_of(cfg.manifest), "classes": classes,
               "head_costs_gmacs": head.costs, "parameters": sum(p.numel() for p in head.parameters())}
    atomic_write_text(Path(cfg.out) / "config.json", json.dumps(payload, indent=1))


def write_skipped(run: Path, skipped: dict[str, dict[str, str]]) -> None:
    """RUN/skipped.csv: every manifest video left out ({split: {video_id: why}}), the log shows only the first few."""
    rows = [(vid, split, why) for split, videos in skipped.items() for vid, why in videos.items()]
    if not rows:
        return
    atomic_write_csv(Path(run) / "skipped.csv", ["video_id", "split", "reason"], rows)


def require_finished(run: Path) -> None:
    if not (run / "head.pt").exists() or not (run / "config.json").exists():
        raise FileNotFoundError(f"{run} is not a finished run (needs config.json and head.pt)")


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[TrainConfig, Head, list[str]]:
    """A trained head from its run directory (weights loaded with weights_only=True)."""
    run = Path(run_dir)
    require_finished(run)
    saved = read_config(run)
    cfg = TrainConfig.from_dict(saved["settings"])
    shapes = {role: s["frame_shape"] for role, s in saved["feature_sets"].items()}
    attrs = {role: s["attrs"] for role, s in saved["feature_sets"].items()}
    head = build_head(cfg, HeadDims.of(shapes, attrs, len(saved["classes"])))
    head.load_state_dict(torch.load(run / "head.pt", weights_only=True, map_location=device))
    return cfg, head.to(device), saved["classes"]


# ------------------------------------------------------------------ finding runs (report, figures)

# settings that make one run a variant of another (the rest: paths, optimisation, seed)
VARIANT_KEYS = ("coarse", "fine", "glance", "focus", "frames", "glimpses", "rnn", "coarse_hidden", "fine_hidden",
                "gamma", "lam", "sync", "policy", "reward", "stage2", "reuse", "keep_ratio")


@dataclass
class Run:
    path: Path
    settings: dict          # TrainConfig's fields, and `patch_size` for a method reading a patch grid
    metrics: dict
    manifest_sha256: str

    @property
    def source(self) -> tuple[str, str]:
        return self.manifest_sha256, str(Path(self.settings["cache"]).resolve())


def _patch_size(cfg: TrainConfig) -> int | None:
    """P of the patch grid a method reads (the registry's spec syntax, without its registry check:
    synthetic caches name sets too)."""
    from pipeline.backbones.registry import SPEC_RE
    role = cfg.record.role_of_kind("grid")
    match = SPEC_RE.match(str(getattr(cfg, cfg.record.roles[role].option))) if role else None
    return int(match["patch"]) if match and match["patch"] else None


def find_runs(runs_dir: str | Path) -> list[Run]:
    """Every finished run (metrics.json and config.json) under runs_dir."""
    runs = []
    for metrics_path in sorted(Path(runs_dir).rglob("metrics.json")):
        folder = metrics_path.parent
        if not (folder / "config.json").exists():
            continue
        config = read_config(folder)
        cfg = TrainConfig.from_dict(config["settings"])
        settings = cfg.to_dict() | {"patch_size": _patch_size(cfg)}
        runs.append(Run(folder, settings, json.loads(metrics_path.read_text(encoding="utf-8")),
                        config.get("manifest_sha256", "")))
    return runs


def _distance_from_defaults(run: Run, fixed: dict) -> int:
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    return sum(run.settings.get(k) != defaults.get(k) for k in VARIANT_KEYS if k not in fixed and k != "frames")


def select(runs: list[Run], match: dict) -> Run | None:
    """The run with these settings; among several, the one closest to the defaults, then the newest."""
    found = [r for r in runs if all(r.settings.get(k) == v for k, v in match.items())]
    if not found:
        return None
    return min(found, key=lambda r: (_distance_from_defaults(r, match), -(r.path / "metrics.json").stat().st_mtime))
