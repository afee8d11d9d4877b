"""A run's phase-one pipeline rebuilt for prediction, from its config.json and the cache attributes
recorded there: the same feature sets (refused when the registry cannot build them), one decoding
for all of them, and the weights (their sha256 checked against the cache's; a checkpoint file is
looked for where extraction recorded it)."""
from __future__ import annotations

from pathlib import Path

from pipeline import backbones as bb
from pipeline.batching import PREDICT_CALL_ROWS, PREDICT_CALL_ROWS_CPU
from pipeline.cache import attr
from pipeline.core.devices import resolve_device
from pipeline.core.errors import PredictError
from pipeline.core.files import sha256_of
from pipeline.decode import Sampling
from pipeline.runner import FeatureRunner

ONE_DECODING = ("fps", "num_frames", "seek", "preprocess", "canvas", "precision")


def sampling_of(attrs: dict) -> Sampling:
    return Sampling(num_frames=int(attrs["num_frames"])) if "num_frames" in attrs else Sampling(fps=float(attrs["fps"]))


def rebuild_set(name: str, attrs: dict) -> bb.FeatureSet:
    """The registered feature set behind a cached one, refused when the cache's attributes do not
    describe it (a cache made by another tool, or a synthetic one)."""
    try:
        fs = bb.parse_spec(name)
    except ValueError as err:
        raise PredictError(f"cannot rebuild feature set {name!r} ({err}); was the cache made by another tool?") from None
    recorded = {k: attrs.get(k) for k in ("backbone", "input_size", "output", "grid", "patch_size")}
    expected = {"backbone": fs.backbone.name, "input_size": fs.input_size, "output": fs.output, "grid": fs.grid,
                "patch_size": fs.patch_size}
    if recorded != expected:
        raise PredictError(f"feature set {name}: the cache records {recorded}, the registry builds {expected}; "
                           "was the cache made by another tool?")
    return fs



def _recorded_file(name: str, attrs: dict) -> str | None:
    """The checkpoint extraction recorded for the set, when it is still there with the same sha256."""
    path = attrs.get("weights_file")
    return path if path and Path(path).is_file() and sha256_of(path) == attrs["weights"] else None


def resolve_weights(recorded: dict[str, dict], given: list[str], allow_other: bool) -> tuple[dict[str, str], list[str]]:
    """Each set's weights ({set: its cache attributes}), and notes on those that differ from the cache's.

    `given` as for `c2f extract`: SET=VALUE for one set, or bare values: a bare PATH serves every
    set that recorded its sha256 (else, as another file, the sets that recorded a file);
    imagenet / random serve the sets that recorded nothing else usable. A set recorded with
    imagenet or random needs nothing given, nor one whose checkpoint is still where extraction read it."""
    bare, explicit = bb.parse_weights_option(given)
    unknown = set(explicit) - set(recorded)
    if unknown:
        raise PredictError(f"--weights names feature sets this run does not use: {', '.join(sorted(unknown))}")
    for value in list(explicit.values()) + bare:
        bb.check_weights(value)
    hashes = {value: sha256_of(value) for value in bare if value not in ("imagenet", "random")}
    words = [value for value in bare if value in ("imagenet", "random")]
    chosen, notes = {}, []
    for name, attrs in recorded.items():
        tag = attrs["weights"]
        by_hash = [value for value, digest in hashes.items() if digest == tag]
        files = list(hashes) if tag not in ("imagenet", "random") else []
        # what the user gave first; the checkpoint where extraction read it only when nothing given applies
        value = (explicit.get(name) or (by_hash[0] if by_hash else None)
                 or (tag if tag in ("imagenet", "random") else None) or (files[0] if files else None)
                 or _recorded_file(name, attrs) or (words[0] if words else None))
        if value is None:
            where = f" (extraction read {attrs['weights_file']}, which is not there now)" if attrs.get("weights_file") else ""
            raise PredictError(f"{name} was extracted with the weights whose sha256 is {tag[:16]}...{where}",
                               f"pass that file with --weights {name}=PATH")
        used = bb.weights_tag(value)
        if used != tag:
            if not allow_other:
                raise PredictError(f"{name}: the weights given ({value}, {used[:16]}) are not the cache's ({tag[:16]})",
                                   "pass the same file, or --allow-other-weights")
            notes.append(f"{name}: {value} ({used[:16]}) instead of the cache's {tag[:16]}")
        chosen[name] = value
    return chosen, notes


def require_attributes(saved: dict) -> None:
    """A run's config.json records its sets' cache attributes (an older c2f's did not)."""
    if "feature_sets" not in saved or not all("attrs" in s for s in saved["feature_sets"].values()):
        raise PredictError("config.json has no feature-set attributes (a run from an older c2f)",
                           "train it again with this c2f")


def rebuild(saved: dict, weights: list[str], device: str, allow_other_weights: bool,
            batch_size: int | None = None) -> tuple[dict, dict, FeatureRunner, dict[str, str], list[str]]:
    """(role -> feature set, role -> cache attributes, the runner with the weights, set -> the weights
    used (imagenet, random or a sha256), notes on weights other than the cache's) of a run; the runner
    calls its networks on `batch_size` rows at most (default: PREDICT_CALL_ROWS_CPU on the CPU, else
    PREDICT_CALL_ROWS)."""
    require_attributes(saved)
    attrs = {role: s["attrs"] for role, s in saved["feature_sets"].items()}
    sets = {role: rebuild_set(s["name"], s["attrs"]) for role, s in saved["feature_sets"].items()}
    for key in ONE_DECODING:
        values = {str(a.get(key)) for a in attrs.values()}
        if len(values) > 1:
            raise PredictError(f"the run's feature sets were extracted with different {key} ({', '.join(values)}): "
                               "predict rebuilds one decoding for all of them")
    chosen, notes = resolve_weights({s.name: attrs[r] for r, s in sets.items()}, list(weights), allow_other_weights)
    first = next(iter(attrs.values()))
    device = resolve_device(device)
    rows = batch_size or (PREDICT_CALL_ROWS_CPU if device.type == "cpu" else PREDICT_CALL_ROWS)
    runner = FeatureRunner(list({s.name: s for s in sets.values()}.values()), chosen, device,
                           rows, first.get("precision", "fp32"), bool(first.get("channels_last", 1)),
                           attr(first, "preprocess"))
    # the decoded square's side as extraction had it (a run of more sets may have had a larger one)
    runner.canvas = int(first.get("canvas", runner.canvas))
    return sets, attrs, runner, {name: bb.weights_tag(value) for name, value in chosen.items()}, notes
