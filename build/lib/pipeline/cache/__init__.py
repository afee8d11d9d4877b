"""The feature cache (schema version 1): the only thing phase two knows of phase one. One package
owns its schema, its writer, its reader and its tools, so extraction, training, prediction and
`c2f cache` agree on what is on disk.

    schema.py   the shard attributes, a shard's layout, index.json's layout
    index.py    FeatureIndex: one set's index.json (open to extract into, rebuild, verify, write, read)
    reader.py   Cache (a folder's sets by name), features packed in memory or memory-mapped
    tools.py    errors.csv, `c2f cache verify | reindex`

In a notebook:

    from pipeline.cache import open_cache
    cache = open_cache("demo_out/cache")
    cache.sets()                                   # ['mobilenet_v2@112', 'resnet18@224', ...]
    videos = cache.feature_set("resnet18@224").read_all()     # {video_id: VideoFeatures}
    videos["val_0000"].features.shape              # (8, 512) float16; .timestamps in seconds
"""
from ..core.errors import CacheError
from .index import FeatureIndex, read_feature_set
from .reader import Cache, ShardFeatures, finite_rows, open_cache, read_packed
from .schema import (KINDS, REPAIR, SCHEMA_VERSION, IndexDamaged, Located, ShardLayout, VideoFeatures, attr,
                     shard_attrs)
from .tools import append_errors, feature_set_folders, reindex_cache, verify_cache

__all__ = ["CacheError", "FeatureIndex", "read_feature_set", "Cache", "ShardFeatures", "finite_rows", "open_cache",
           "read_packed", "KINDS", "REPAIR", "SCHEMA_VERSION", "IndexDamaged", "Located", "ShardLayout",
           "VideoFeatures", "attr", "shard_attrs", "append_errors", "feature_set_folders", "reindex_cache",
           "verify_cache"]
