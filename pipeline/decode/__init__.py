"""Decoding with PyAV, one video at a time: `container` (opening safely, the packet index, the time
limit), `sampling` (the sample times, the seek modes), `reader` (decode_samples: the sampled
frames as squares, streamed) and `snippets` (one sample's snippet at a time, for prediction)."""
from .container import DecodeError, PacketIndex
from .reader import VIDEO_TIMEOUT, Sample, SamplePlan, decode_samples, plan_samples, read_samples, to_square
from .sampling import SEEK_MODES, Sampling
from .snippets import SnippetReader

__all__ = ["DecodeError", "PacketIndex", "VIDEO_TIMEOUT", "Sample", "SamplePlan", "decode_samples", "plan_samples",
           "read_samples", "to_square", "SEEK_MODES", "Sampling", "SnippetReader"]
