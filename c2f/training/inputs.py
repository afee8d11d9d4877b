"""What a run trains and is evaluated on: the training videos, the calibration part held out of them
(--calibration-share: where thresholds and operating points are chosen, never on the eval split) and
the evaluation split, with the feature sets the method reads, checked (kinds, decoding), and the
head's dimensions from them."""
from __future__ import annotations

import hashlib
import logging

from pipeline.cache import Cache, attr
from pipeline.core.errors import SettingsError
from pipeline.core.manifest import read_manifest

from ..config import MIN_CALIBRATION_VIDEOS, TrainConfig
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


def calibration_ids(video_ids: list[str], share: float, seed: int) -> set[str]:
    """The training videos held out as the calibration part: `share` of them, the same ones for the same
    ids and seed whatever their order (each id's hash with the seed decides)."""
    if not share:
        return set()
    ranked = sorted(video_ids, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())
    chosen = ranked[:round(share * len(ranked))]
    if len(chosen) < MIN_CALIBRATION_VIDEOS:
        raise SettingsError(f"--calibration-share {share:g} holds out {len(chosen)} of {len(ranked)} training videos; "
                            f"choosing between operating points needs at least {MIN_CALIBRATION_VIDEOS}",
                            "give a larger share, or none (the points are then chosen on the training videos)")
    return set(chosen)


def load_data(cfg: TrainConfig) -> tuple[VideoSet, VideoSet | None, VideoSet, list[str]]:
    """The training videos, the calibration part held out of them (None without --calibration-share) and
    the evaluation split, with the feature sets the method reads (each index parsed once)."""
    roles, cache = cfg.feature_sets(), Cache(cfg.cache)
    manifest = read_manifest(cfg.manifest, check_paths=False)
    classes = manifest.classes()
    held_out = calibration_ids([e.video_id for e in manifest.split(cfg.train_split)], cfg.calibration_share, cfg.seed)
    train = _load_split(cfg, manifest, cfg.train_split, cache, classes, lambda v: v not in held_out)
    calibration = _load_split(cfg, manifest, cfg.train_split, cache, classes, held_out.__contains__) if held_out else None
    if calibration is not None and len(calibration) < MIN_CALIBRATION_VIDEOS:
        raise SettingsError(f"--calibration-share {cfg.calibration_share:g}: {len(calibration)} of the {len(held_out)} "
                            f"calibration videos have features in {cfg.cache}; choosing between operating points "
                            f"needs at least {MIN_CALIBRATION_VIDEOS}", "give a larger share, or none (the points "
                            "are then chosen on the training videos)")
    evaluation = train if cfg.eval_split == cfg.train_split and not held_out else \
        _load_split(cfg, manifest, cfg.eval_split, cache, classes)
    warn_mixed_decoding(train)
    unseen = [c for c, n in zip(classes, train.targets.sum(0).tolist()) if n == 0]
    if unseen:
        log.warning("%d classes have no training video (never predicted well): %s", len(unseen),
                    ", ".join(unseen[:10]))
    return train, calibration, evaluation, classes


def _load_split(cfg: TrainConfig, manifest, split: str, cache: Cache, classes: list[str], keep=None) -> VideoSet:
    """One split's videos (those `keep` accepts), checked: some have features, of the kinds the method reads."""
    entries = [e.video_id for e in manifest.split(split) if keep is None or keep(e.video_id)]
    videos = load_videos(manifest, split, cache, cfg.feature_sets(), classes, only=set(entries))
    _summarise_skipped(videos, split)
    if len(videos) == 0:
        raise CacheError(f"no {split} video of {cfg.manifest} has features in {cfg.cache} "
                         f"({len(videos.skipped)} skipped, {len(entries)} in the manifest)")
    check_shapes(cfg, videos)
    return videos



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
        # a clip set (SlowFast) keeps one pooled vector per sample, its snippet's: it serves as a pooled set
        if info.kind != need.kind and not (info.kind, need.kind) == ("clip", "pooled"):
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

