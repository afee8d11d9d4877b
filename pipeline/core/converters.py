"""Manifests built from what a user has: the official annotation files (ActivityNet v1.3 JSON,
Kinetics / Mini-Kinetics CSV, FCVID lists, Something-Something v2 JSON), a folder per class, or just
video files (ids from their file names, no labels: features only). Each returns manifest rows;
`video_root` is where the video files live."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .errors import ManifestError
from .manifest import SPLITS, VIDEO_EXTENSIONS


def _find_video(video_root: Path, stems: list[str]) -> Path:
    """The first existing file named stem.<video ext>; else the first stem with .mp4 (reported later)."""
    for stem in stems:
        for ext in VIDEO_EXTENSIONS:
            candidate = video_root / f"{stem}{ext}"
            if candidate.exists():
                return candidate
    return video_root / f"{stems[0]}.mp4"


def from_activitynet(json_path, video_root) -> list[dict]:
    """ActivityNet v1.3 JSON: database[id] = {subset, annotations[{label}], duration}."""
    subsets = {"training": "train", "validation": "val", "testing": "test"}
    database = json.loads(Path(json_path).read_text(encoding="utf-8"))["database"]
    rows = []
    for youtube_id, info in sorted(database.items()):
        labels = sorted({a["label"] for a in info.get("annotations", [])})
        rows.append({"video_id": youtube_id,
                     "path": _find_video(Path(video_root), [f"v_{youtube_id}", youtube_id]),
                     "labels": labels, "split": subsets[info["subset"]],
                     "duration": info.get("duration", "")})
    return rows


def from_kinetics(csv_path, video_root, split: str | None = None, subset_ids=None) -> list[dict]:
    """Kinetics CSV (label, youtube_id, time_start, time_end, split). Mini-Kinetics: `subset_ids`
    is a text file of youtube ids (or of Kinetics file names) to keep."""
    keep = None
    if subset_ids:
        keep = {line.strip().split()[0][:11] for line in Path(subset_ids).read_text().splitlines() if line.strip()}
    video_root = Path(video_root)
    splits = {"train": "train", "validate": "val", "val": "val", "test": "test"}
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            youtube_id = record["youtube_id"]
            if keep is not None and youtube_id not in keep:
                continue
            stem = f"{youtube_id}_{int(float(record['time_start'])):06d}_{int(float(record['time_end'])):06d}"
            label = record.get("label", "")
            row_split = splits.get(record.get("split", ""), split or "train") if split is None else split
            found = _find_video(video_root / label, [stem]) if label else None
            if found is None or not found.exists():
                found = _find_video(video_root, [stem])
            rows.append({"video_id": stem, "path": found, "labels": [label] if label else [], "split": row_split})
    return rows


def from_fcvid(split_list, label_matrix, categories, video_root) -> list[dict]:
    """FCVID: FCVID_VideoName_TrainTestSplit.txt (`relative/path train|test`), FCVID_Label.txt
    (one 0/1 row per video, a column per class), and the category list (one name per line,
    optionally preceded by its index)."""
    names = []
    for line in Path(categories).read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(maxsplit=1)
        if parts:
            names.append(parts[-1] if len(parts) == 2 and parts[0].isdigit() else line.strip())
    split_rows = [line.split() for line in Path(split_list).read_text(encoding="utf-8").splitlines() if line.strip()]
    label_rows = [line.split() for line in Path(label_matrix).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(split_rows) != len(label_rows):
        raise ManifestError(f"{split_list} has {len(split_rows)} videos but {label_matrix} has {len(label_rows)} rows")
    rows = []
    for lineno, ((rel, subset), flags) in enumerate(zip(split_rows, label_rows), start=1):
        if len(flags) != len(names):
            raise ManifestError(f"{label_matrix}:{lineno}: {len(flags)} columns but {len(names)} categories")
        labels = [name for name, flag in zip(names, flags) if float(flag) > 0]
        rows.append({"video_id": os.path.splitext(os.path.normpath(rel))[0].replace(os.sep, "/"),
                     "path": Path(video_root) / rel, "labels": labels,
                     "split": {"train": "train", "test": "test", "val": "val"}[subset]})
    return rows


def from_something_something(json_path, labels_json, video_root, split: str) -> list[dict]:
    """Something-Something v2: a list of {id, template, ...}; the class is the template with
    its [something] brackets removed, as in labels.json."""
    known = set(json.loads(Path(labels_json).read_text(encoding="utf-8"))) if labels_json else None
    rows = []
    for item in json.loads(Path(json_path).read_text(encoding="utf-8")):
        label = item.get("template", "").replace("[", "").replace("]", "")
        if known is not None and label and label not in known:
            raise ManifestError(f"{json_path}: video {item['id']}: label {label!r} is not in {labels_json}")
        rows.append({"video_id": str(item["id"]), "path": _find_video(Path(video_root), [str(item["id"])]),
                     "labels": [label] if label else [], "split": split})
    return rows


def from_folder(root, split: str | None = "train") -> list[dict]:
    """root/CLASS/video.ext, or root/SPLIT/CLASS/video.ext when root's folders are split names."""
    root = Path(root)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if subdirs and all(p.name in SPLITS for p in subdirs):
        layout = [(p.name, p) for p in subdirs]
    else:
        layout = [(split or "train", root)]
    rows = []
    for split_name, split_dir in layout:
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for video in sorted(class_dir.rglob("*")):
                if video.is_file() and video.suffix.lower() in VIDEO_EXTENSIONS:
                    rel = video.relative_to(split_dir).with_suffix("")
                    rows.append({"video_id": str(rel).replace(os.sep, "/") if len(layout) == 1 else f"{split_name}/{rel}",
                                 "path": video.resolve(), "labels": [class_dir.name], "split": split_name})
    return rows


def video_ids(paths: list[Path]) -> list[str]:
    """An id per video from its file name, unique and stable: the stem, or where stems collide, as many
    of the path's last folders as it takes to tell them apart (`a/clip`, `b/clip`)."""
    parts = [list(Path(p).with_suffix("").parts) for p in paths]
    depth = [1] * len(paths)
    while True:
        ids = ["/".join(q[-d:]) for q, d in zip(parts, depth)]
        seen: dict[str, list[int]] = {}
        for i, video_id in enumerate(ids):
            seen.setdefault(video_id, []).append(i)
        clashes = [i for group in seen.values() if len(group) > 1 for i in group if depth[i] < len(parts[i])]
        if not clashes:
            return ids
        for i in clashes:
            depth[i] += 1


def from_paths(paths: list[str | Path]) -> list[dict]:
    """Rows for video files as given (no labels, split `test`: features only)."""
    paths = [Path(p) for p in paths]
    return [{"video_id": video_id, "path": path.resolve(), "labels": [], "split": "test"}
            for video_id, path in zip(video_ids(paths), paths)]


def from_paths_file(listing: str | Path) -> list[dict]:
    """Rows for the video files listed one per line in a text file (relative paths: to the file's folder;
    blank lines and lines starting with # are skipped)."""
    listing = Path(listing)
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{listing}: cannot be read as UTF-8 text ({err.__class__.__name__})") from None
    paths = [Path(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]
    if not paths:
        raise ManifestError(f"{listing}: lists no video file")
    return from_paths([p if p.is_absolute() else listing.parent / p for p in paths])


def from_video_folder(root: str | Path) -> list[dict]:
    """Rows for every video file under a folder (recursively); ids are their paths under it."""
    root = Path(root)
    videos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise ManifestError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in it or below")
    return [{"video_id": str(p.relative_to(root).with_suffix("")).replace(os.sep, "/"), "path": p.resolve(),
             "labels": [], "split": "test"} for p in videos]
