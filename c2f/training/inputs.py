"""What a run trains and is evaluated on: the train and evaluation splits with the feature sets the
method reads, checked (kinds, decoding), and the head's dimensions from them."""
from __future__ import annotations

import logging

from pipeline.cache import Cache, attr
from pipeline.core.manifest import read_manifest

from ..config import TrainConfig
from ..data import CacheError, VideoSet, load_videos
from ..heads import HeadDims
from ..methods import role_of

log = logging.getLogger(__name__)


def _summarise_skipped(videos: VideoSet, split: str) -> None:
    if videos.skipped:
        shown = "; ".join(f"{v}: {why}" for v, why in list(videos.skipped.items())[:5])
        more = f" (+{len(videos.skipped) - 5} more)" if len(videos.skipped) > 5 else ""
        log.warning("%d %s videos skipped (all listed in RUN/skipped.csv): %s%s", len(videos.skipped), split,
                    shown, more)


def load_data(cfg: TrainConfig) -> tuple[VideoSet, VideoSet, list[str]]:
    """The train and evaluation splits, with the feature sets the method reads (each index parsed once)."""
    roles, cache = cfg.feature_sets(), Cache(cfg.cache)
    manifest = read_manifest(cfg.manifest, check_paths=False)
    classes = manifest.classes()
    splits = []
    for split in (cfg.train_split, cfg.eval_split):
        if splits and split == cfg.train_split:     # evaluating on the training split: load it once
            splits.append(splits[0])
            break
        videos = load_videos(manifest, split, cache, roles, classes)
        _summarise_skipped(videos, split)
        if len(videos) == 0:
            raise CacheError(f"no {split} video of {cfg.manifest} has features in {cfg.cache} "
                             f"({len(videos.skipped)} skipped, {len(manifest.split(split))} in the manifest)")
        check_shapes(cfg, videos)
        splits.append(videos)
    warn_mixed_decoding(splits[0])
    train, evaluation = splits
    unseen = [c for c, n in zip(classes, train.targets.sum(0).tolist()) if n == 0]
    if unseen:
        log.warning("%d classes have no training video (never predicted well): %s", len(unseen),
                    ", ".join(unseen[:10]))
    return train, evaluation, classes


def check_shapes(cfg: TrainConfig, videos: VideoSet) -> None:
    """Each role's feature set has the kind the method reads; videos with fewer frames than
    --frames are counted when the method samples segments (they repeat frames).

    AdaFocus's glance map may come from a smaller input than its patch grid (the paper glances
    at low resolution): phase one resizes every set from the same centre-cropped square, so
    the map's cells and the grid's candidates cover the same part of the frame whatever the
    sizes, and the timestamps check pairs the same frames."""
    record = cfg.record
    for role, info in videos.sets.items():
        need = record.roles[role_of(role)]
        if info.kind != need.kind:
            raise CacheError(f"{cfg.method} needs a {need.kind} feature set for --{need.option}; {info.name} is a "
                             f"{info.kind} set (per-frame shape {info.frame_shape})")
    if record.role_of_kind("grid"):
        short = int((videos.lengths < cfg.setting("frames")).sum())
        if short:
            log.warning("%d videos have fewer cached frames than --frames %d: their segments repeat frames "
                        "(a frame or patch read twice is charged once)", short, cfg.setting("frames"))


def warn_mixed_decoding(videos: VideoSet) -> None:
    """Sets of one run decoded differently (seek mode, preprocessing, canvas) still pair by
    timestamps, but their features describe differently prepared frames: say so."""
    for key in ("seek", "preprocess", "canvas"):
        values = {role: attr(info.attrs, key) for role, info in videos.sets.items()}
        if len(set(map(str, values.values()))) > 1:
            log.warning("the feature sets of this run were decoded differently (%s: %s)", key,
                        ", ".join(f"{videos.sets[r].name} {v}" for r, v in values.items()))


def head_dims(videos: VideoSet, classes: list[str]) -> HeadDims:
    return HeadDims.of({role: info.frame_shape for role, info in videos.sets.items()},
                       {role: info.attrs for role, info in videos.sets.items()}, len(classes))

