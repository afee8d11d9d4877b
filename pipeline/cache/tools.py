"""The cache's maintenance: errors.csv (videos that failed), and `c2f cache verify | reindex`."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import CacheError
from ..core.files import FolderLock, append_csv, locked
from .index import FeatureIndex


def append_errors(cache: Path, rows: list[tuple[str, str, str]]) -> None:
    """CACHE/errors.csv: video_id, path, reason (one line per failed video)."""
    if not rows:
        return
    with locked(Path(cache) / ".errors.lock"):
        append_csv(Path(cache) / "errors.csv", ["video_id", "path", "reason"], rows)


def feature_set_folders(cache: Path) -> list[Path]:
    """The feature sets of a cache: folders holding an index.json or shards."""
    return sorted(p for p in Path(cache).iterdir() if p.is_dir() and
                  ((p / "index.json").exists() or any(p.glob("shard-*.h5"))))


def verify_cache(cache: Path) -> dict[str, list[str]]:
    """Set name -> its problems (empty when sound): index.json readable and as the cache contract lays it out,
    every shard opening and agreeing with it (ids, offsets, frame counts, attributes)."""
    report = {}
    for folder in feature_set_folders(cache):
        try:
            report[folder.name] = FeatureIndex.load(folder).verify()
        except (CacheError, FileNotFoundError) as err:
            report[folder.name] = [f"{err}; c2f cache reindex {cache} rebuilds it from the shards"]
    return report


def reindex_cache(cache: Path) -> dict[str, FeatureIndex]:
    """Rebuild every set's index.json from its shards (the old one kept aside), under the cache lock."""
    with FolderLock(Path(cache), what="c2f run"):
        return {folder.name: FeatureIndex.rebuild(folder) for folder in feature_set_folders(cache)}
