"""Counted multiply-adds (the papers' GFLOPs): torch's FlopCounterMode on the real modules, 2 FLOPs
per multiply-add, never typed-in constants.

Counting DPN-107 or SlowFast takes seconds, so each count is kept on disk (C2F_CACHE, default
~/.cache/c2f, file gflops.json), keyed by the feature set, the counting rules (COUNTING), c2f's version
and the versions of torch and of the library that defines the model: a change in any counts again,
nothing else does."""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
from pathlib import Path

from torch import nn

from ..core.errors import MissingLibraryError
from ..core.files import atomic_write_text, locked
from ..core.flops import count_gmacs
from .registry import parse_spec
from .weights import build_full

log = logging.getLogger(__name__)

def cache_folder() -> Path:
    """Where c2f keeps what it computes once per machine (C2F_CACHE, else $XDG_CACHE_HOME/c2f or ~/.cache/c2f)."""
    if os.environ.get("C2F_CACHE"):
        return Path(os.environ["C2F_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "c2f"


# The counting rules' own version, part of every count's key: raise it with any change to what a count
# means (which module is counted, on what input, what one frame of a grid or snippet set is), so that
# counts kept on disk under the old rules are not read back. c2f's version is in the key too, but
# pipeline never imports c2f, so it comes from the installed distribution's metadata, which a source
# tree run in place (or an editable install not reinstalled) does not update: hence this number.
COUNTING = 1


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def count_key(fs) -> str:
    return (f"{fs.name}|counting {COUNTING}|c2f {_version('c2f')}|torch {_version('torch')}|"
            f"{fs.backbone.library} {_version(fs.backbone.library)}")


def _stored() -> dict:
    try:
        data = json.loads((cache_folder() / "gflops.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(key: str, value: float) -> None:
    """Add one count to the file; a folder that cannot be written only means counting again next time."""
    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with locked(folder / ".gflops.lock"):
            atomic_write_text(folder / "gflops.json", json.dumps(_stored() | {key: value}, indent=1, sort_keys=True))
    except OSError:
        pass


def full_model_gmacs(full: nn.Module, fs) -> float:
    """The cost of one frame (patch, snippet) is the published network's, classifier included: the
    papers' convention (docs/contracts/flops.md) (its 1000-way head is ~0.002 GMACs of MobileNetV2's 0.08)."""
    example = fs.example_input()
    return count_gmacs(full, fs.backbone.full_input(example) if fs.backbone.full_input else example)


def gflops_per_frame(fs, full: nn.Module | None = None) -> float:
    """Counted GMACs for one frame (a patch for a grid, a snippet for SlowFast), from the disk cache
    when this set was counted with these library versions before; `full`: the built network, when
    the caller has one (else one is built with random weights: the count does not depend on them)."""
    key = count_key(fs)
    stored = _stored().get(key)
    if isinstance(stored, float):
        return stored
    value = full_model_gmacs(full if full is not None else build_full(fs.backbone, "random"), fs)
    _store(key, value)
    return value


# The feature sets the two papers use, with the GFLOPs (multiply-adds) the papers state, for
# display next to the counted values (`c2f flops`). Never used for accounting.
PAPER_GFLOPS = {
    "mobilenet_v2@112": 0.08,              # LiteEval, coarse
    "resnet101@224": 7.82,                 # LiteEval, fine
    "dpn107@224": 18.34,                   # LiteEval, fine
    "slowfast_r50": 65.71,                 # LiteEval, per 8x8 snippet
    "mobilenet_v2@224-map": 0.2995,        # AdaFocus glance (authors' code)
    "resnet18@224": None,                  # the demo's fine backbone
    "resnet50@224": None,
    "resnet50@224-grid7x96": None,         # AdaFocus patches: per patch, no per-patch value printed
    "resnet50@224-grid7x128": None,
    "resnet50@224-grid7x160": None,
    "resnet50@224-grid7x192": None,
}


def counted_sets(specs) -> tuple[dict[str, float], dict[str, MissingLibraryError]]:
    """GMACs per frame of each set whose library is installed, and for each of the others (a plain
    `pip install c2f` has neither timm nor pytorchvideo) the error naming the extra that installs it.
    Only a missing library leaves a set out: any other failure stops as it would anyway."""
    counted, left_out = {}, {}
    for spec in specs:
        try:
            counted[spec] = gflops_per_frame(parse_spec(spec))
        except MissingLibraryError as err:
            left_out[spec] = err
    return counted, left_out


def warn_left_out(left_out: dict[str, MissingLibraryError], where: str) -> None:
    """One warning line per set left out, naming it and the extra to install."""
    for spec, err in left_out.items():
        log.warning("%s left out of %s: %s", spec, where, err.line())


def flops_table(specs: list[str] | None = None) -> list[dict]:
    """Counted GMACs per frame (per patch, per snippet) of the given feature sets; by default the papers',
    less (with a warning each) those whose library is not installed."""
    if specs:
        counted = {spec: gflops_per_frame(parse_spec(spec)) for spec in specs}
    else:
        counted, left_out = counted_sets(PAPER_GFLOPS)
        warn_left_out(left_out, "the table")
    rows = []
    for spec, gmacs in counted.items():
        fs = parse_spec(spec)
        rows.append({"feature_set": fs.name, "input": list(fs.example_input().shape[1:]),
                     "feature_shape": list(fs.feature_shape), "gflops_counted": gmacs,
                     "gflops_paper": PAPER_GFLOPS.get(fs.name)})
    return rows
