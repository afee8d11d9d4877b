"""Sampling and decoding on videos written by the tests (PyAV, H.264)."""
import numpy as np
import pytest

from conftest import make_audio_only, make_video
from pipeline.decode import DecodeError, Sampling, decode_samples


def brightness_index(image):
    """Inverse of conftest.frame_image: the frame index (mod 30) from the bottom-right pixel."""
    return int(round((int(image[-1, -1].mean()) - 10) / 8))


def test_fps_sampling_picks_the_frames_at_each_second(tmp_path):
    video = make_video(tmp_path / "a.mp4", num_frames=30, fps=10)        # 3.0 s
    samples = list(decode_samples(video, Sampling(fps=1), 32))
    assert [s.timestamp for s in samples] == [0.0, 1.0, 2.0]
    assert [brightness_index(s.image) for s in samples] == [0, 10, 20]
    assert all(s.image.shape == (32, 32, 3) and s.image.dtype == np.uint8 for s in samples)


def test_num_frames_takes_segment_centres(tmp_path):
    video = make_video(tmp_path / "a.mp4", num_frames=40, fps=10)        # 4.0 s
    samples = list(decode_samples(video, Sampling(num_frames=4), 32))
    assert [s.timestamp for s in samples] == pytest.approx([0.5, 1.5, 2.5, 3.5])


def test_seeking_and_linear_decoding_agree(tmp_path):
    video = make_video(tmp_path / "a.mp4", num_frames=120, fps=10, gop=5)
    for sampling in (Sampling(num_frames=3), Sampling(fps=0.5), Sampling(fps=3)):
        chosen = list(decode_samples(video, sampling, 32))
        linear = list(decode_samples(video, sampling, 32, force_linear=True))
        assert [s.timestamp for s in chosen] == [s.timestamp for s in linear]
        assert all((a.image == b.image).all() for a, b in zip(chosen, linear))


def test_variable_frame_rate_uses_real_timestamps(tmp_path):
    times = [0, 0.1, 0.2, 1.5, 1.6, 2.9, 3.0, 3.05, 4.5, 4.6]
    video = make_video(tmp_path / "vfr.mp4", num_frames=len(times), pts_seconds=times)
    samples = list(decode_samples(video, Sampling(fps=1), 32))
    # the first frame at or after 0, 1, 2, 3, 4 s
    assert [s.timestamp for s in samples] == pytest.approx([0.0, 1.5, 2.9, 3.0, 4.5])
    assert [brightness_index(s.image) for s in samples] == [0, 3, 5, 6, 8]


def test_video_shorter_than_one_interval_gives_one_frame(tmp_path):
    video = make_video(tmp_path / "short.mp4", num_frames=3, fps=10)     # 0.3 s at 1 fps
    samples = list(decode_samples(video, Sampling(fps=1), 32))
    assert len(samples) == 1 and samples[0].timestamp == 0.0


def test_rotation_metadata_is_applied(tmp_path):
    import av
    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(90)              # display: 90 degrees counter-clockwise
        from conftest import frame_image
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(frame_image(i, 96, 64), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    image = next(iter(decode_samples(path, Sampling(num_frames=1), 32))).image
    red = image[..., 0].astype(int) - image[..., 1].astype(int)
    # the red block stored top-left shows bottom-left once turned counter-clockwise
    assert red[-4:, :4].mean() > 150 and red[:4, :4].mean() < 50


def test_snippets_are_centred_on_the_sample(tmp_path):
    video = make_video(tmp_path / "a.mp4", num_frames=30, fps=10)
    samples = list(decode_samples(video, Sampling(fps=1), 32, clip_frames=4, clip_stride=2))
    assert [s.timestamp for s in samples] == [0.0, 1.0, 2.0]
    # centre 10: frames 6, 8, 10, 12; centre 0 repeats the first frame at the edge
    assert [brightness_index(f) for f in samples[1].clip] == [6, 8, 10, 12]
    assert [brightness_index(f) for f in samples[0].clip] == [0, 0, 0, 2]
    assert (samples[1].image == samples[1].clip[2]).all()


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "audio", "truncated", "corrupt", "unknown codec"])
def test_bad_inputs_raise_one_line_decode_errors(tmp_path, kind):
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "audio":
        path = make_audio_only(tmp_path / "audio.m4a")
    elif kind in ("truncated", "corrupt"):
        make_video(path, num_frames=100, faststart=True)
        data = bytearray(path.read_bytes())
        if kind == "truncated":
            data = data[: len(data) // 2]
        else:   # garbage in the middle of the frame data: the decoder fails mid-stream
            middle = data.find(b"mdat") + (len(data) - data.find(b"mdat")) // 2
            data[middle:middle + 3000] = np.random.default_rng(0).bytes(3000)
        path.write_bytes(bytes(data))
    elif kind == "unknown codec":     # the sample entry's codec tag damaged: the stream has no decoder, no frame size
        data = make_video(path, num_frames=10).read_bytes()
        path.write_bytes(data.replace(b"avc1", b"zzzz"))
    with pytest.raises(DecodeError) as err:
        list(decode_samples(path, Sampling(fps=1), 32))
    assert "\n" not in str(err.value) and str(err.value)
    if kind == "unknown codec":
        assert "unknown codec" in str(err.value)


def test_keyframe_mode_takes_the_nearest_keyframe(tmp_path):
    video = make_video(tmp_path / "k.mp4", num_frames=60, fps=10, gop=20, fixed_gop=True)   # keys at 0, 2, 4 s
    exact = list(decode_samples(video, Sampling(num_frames=6), 32))
    keys = list(decode_samples(video, Sampling(num_frames=6), 32, seek="keyframe"))
    assert [s.timestamp for s in exact] == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    assert [s.timestamp for s in keys] == pytest.approx([0.0, 2.0, 2.0, 4.0, 4.0, 4.0])
    assert [brightness_index(s.image) for s in keys] == [0, 20, 20, 40 % 30, 40 % 30, 40 % 30]
    linear = list(decode_samples(video, Sampling(num_frames=6), 32, seek="keyframe", force_linear=True))
    assert [s.timestamp for s in linear] == [s.timestamp for s in keys]


def test_nonref_mode_takes_the_nearest_decoded_frame(tmp_path):
    """With B-frames the decoder may skip some frames: each sample is a real frame near its target."""
    import av
    path = tmp_path / "b.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.options = {"bf": "3", "b-pyramid": "none"}    # non-reference B-frames
        from conftest import frame_image
        for i in range(40):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_image(i, 64, 64), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    samples = list(decode_samples(path, Sampling(fps=2), 32, seek="nonref"))
    assert len(samples) == 8
    for k, sample in enumerate(samples):
        assert abs(sample.timestamp - k / 2) <= 0.2 + 1e-6                    # within two frames of its target
        assert brightness_index(sample.image) == round(sample.timestamp * 10) % 30   # the frame of that time


def test_snippets_refuse_inexact_seeking(tmp_path):
    video = make_video(tmp_path / "a.mp4", num_frames=20)
    with pytest.raises(ValueError, match="--seek exact"):
        list(decode_samples(video, Sampling(fps=1), 32, clip_frames=4, seek="nonref"))


def test_frames_are_resized_as_torchvisions_evaluation_transform(tmp_path):
    """The decoded square is the central crop of torchvision's antialiased short-side resize."""
    import av
    from torchvision.transforms.v2.functional import center_crop, resize
    import torch
    video = make_video(tmp_path / "wide.mp4", num_frames=3, fps=10, width=160, height=96)
    sample = next(decode_samples(video, Sampling(num_frames=1), 64))
    with av.open(str(video)) as container:
        frame = list(container.decode(container.streams.video[0]))[2]      # the first at or after 0.15 s
    rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
    expected = center_crop(resize(rgb, [64], antialias=True), [64, 64]).permute(1, 2, 0).numpy()
    assert np.array_equal(sample.image, expected)


def test_snippets_read_one_at_a_time_are_extractions(tmp_path):
    """SnippetReader (prediction) cuts each sample's snippet as decode_samples (extraction) does, in any
    order (an earlier sample than those held: a new pass), near both ends, and where the packet index
    places a frame wrongly (a pass that keeps every frame)."""
    from pipeline.decode import SnippetReader, plan_samples
    video = make_video(tmp_path / "a.mp4", num_frames=45, fps=10)
    sampling = Sampling(fps=1.5)          # 7 samples 6-7 frames apart: their 12-frame windows overlap
    extracted = [s.clip for s in decode_samples(video, sampling, 32, clip_frames=4, clip_stride=3)]
    plan = plan_samples(video, sampling)
    reader = SnippetReader(plan, 32, clip_frames=4, clip_stride=3)
    for i in (1, 2, 5, 6):
        assert (reader.snippet(i) == extracted[i]).all()
    assert reader.passes == 1 and len(reader.squares) <= 12      # forward: one pass, one window held
    for i in (0, 6, 3):
        assert (reader.snippet(i) == extracted[i]).all()
    assert reader.passes == 3
    reader.close()
    plan.index.times = [t - 0.35 for t in plan.index.times]       # the index places every frame 3-4 too late
    misplaced = SnippetReader(plan, 32, clip_frames=4, clip_stride=3)
    assert all((misplaced.snippet(i) == extracted[i]).all() for i in range(7)) and misplaced.keep_all
    misplaced.close()
