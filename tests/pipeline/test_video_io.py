"""Video I/O: mp4/gif round trips, folders of frames, resize geometry, masks, atomic writes, grids."""
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ieadapt_jax import video_io
from ieadapt_jax.video_io import (
    VideoError,
    read_mask,
    read_video,
    side_by_side,
    write_video,
)

SQUARE = 12
SQUARE_RGB = (255, 255, 0)


def moving_square(frames=8, height=64, width=64) -> np.ndarray:
    """uint8 [F, H, W, 3]: a red gradient along x with a yellow square moving 4 px right per frame."""
    video = np.zeros((frames, height, width, 3), np.uint8)
    video[..., 0] = np.linspace(0, 252, width).astype(np.uint8)
    video[..., 1], video[..., 2] = 64, 128
    for t in range(frames):
        top, left = 10, 4 + 4 * t
        video[t, top : top + SQUARE, left : left + SQUARE] = SQUARE_RGB
    return video


def square_centroid(frame: np.ndarray) -> np.ndarray:
    """(y, x) centroid of the yellow pixels of one uint8 [H, W, 3] frame."""
    ys, xs = np.nonzero((frame[..., 1] > 200) & (frame[..., 2] < 100))
    return np.array([ys.mean(), xs.mean()])


def save_image(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("ext, mean_tol, max_tol", [("mp4", 2.0, 60), ("gif", 1.0, 8)])
def test_round_trip_keeps_frames_size_and_content(tmp_path, ext, mean_tol, max_tol):
    video = moving_square()
    video[5] = video[4]  # a repeated frame must stay a frame of its own
    path = write_video(tmp_path / f"clip.{ext}", video, fps=8)
    back = read_video(path)
    assert back.shape == video.shape and back.dtype == np.uint8
    error = np.abs(back.astype(int) - video.astype(int))
    assert error.mean() < mean_tol and error.max() <= max_tol  # lossy codecs on smooth content
    for t in range(len(video)):
        np.testing.assert_allclose(square_centroid(back[t]), square_centroid(video[t]), atol=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"clip.{ext}"]


def test_odd_sizes_mp4_is_edge_padded_and_gif_is_exact(tmp_path):
    video = moving_square(frames=3, height=33, width=47)
    mp4 = read_video(write_video(tmp_path / "odd.mp4", video))
    assert mp4.shape == (3, 34, 48, 3)  # H.264 4:2:0 needs even sizes: one replicated row and column
    assert np.abs(mp4[:, :33, :47].astype(int) - video).mean() < 3.0
    assert np.abs(mp4[:, 33, :47].astype(int) - video[:, 32]).mean() < 3.0  # replicated edge
    assert read_video(write_video(tmp_path / "odd.gif", video)).shape == video.shape


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16])
def test_float_frames_are_accepted(tmp_path, dtype):
    video = moving_square(frames=2)
    back = read_video(write_video(tmp_path / "f.gif", jnp.asarray(video / 255.0, dtype)))
    assert np.abs(back.astype(int) - video).mean() < 1.5  # bfloat16 keeps 8 bits of mantissa


def test_folder_of_frames_in_natural_order_with_stride(tmp_path):
    for i in range(12):  # frame0.png ... frame11.png: lexical order would put frame10 before frame2
        save_image(tmp_path / f"frame{i}.png", np.full((8, 10, 3), 20 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    video = read_video(tmp_path)
    assert video.shape == (12, 8, 10, 3)
    np.testing.assert_array_equal(video[:, 0, 0, 0], 20 * np.arange(12))
    strided = read_video(tmp_path, num_frames=4, frame_stride=3)
    np.testing.assert_array_equal(strided[:, 0, 0, 0], [0, 60, 120, 180])


def test_grey_rgba_and_16_bit_images_become_rgb(tmp_path):
    grey = read_video(save_image(tmp_path / "g.png", np.full((4, 6), 100, np.uint8)))
    np.testing.assert_array_equal(grey, np.full((1, 4, 6, 3), 100, np.uint8))
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., :3], rgba[:, :3, 3] = 200, 255  # left half opaque, right half transparent
    video = read_video(save_image(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(video[0, :, :3], 200)
    np.testing.assert_array_equal(video[0, :, 3:], 0)  # composited over black
    deep = read_video(save_image(tmp_path / "d.png", np.full((4, 6), 65535, np.uint16)))
    np.testing.assert_array_equal(deep, 255)


# --------------------------------------------------------------------------------- resize + crop


def test_resize_covers_then_centre_crops(tmp_path):
    # 60x120 (H x W) -> (30, 30): halve, then keep the middle 30 of 60 columns (source columns 30..90).
    image = np.zeros((60, 120, 3), np.uint8)
    image[20:40, 0:10] = 255  # left edge: cropped away
    image[20:40, 40:50] = 255  # source centre (30, 45) -> (15, 22.5) -> column 22.5 - 15 = 7.5
    image[20:40, 110:120] = 255  # right edge: cropped away
    out = read_video(save_image(tmp_path / "p.png", image), size=(30, 30))[0, ..., 0].astype(float)
    assert out.shape == (30, 30)
    ys, xs = np.mgrid[0:30, 0:30] + 0.5  # pixel centres
    centroid = np.array([(ys * out).sum(), (xs * out).sum()]) / out.sum()
    np.testing.assert_allclose(centroid, [15.0, 7.5], atol=0.25)
    assert out[:, 15:].max() < 10 and out[:, :3].max() < 10


def test_resize_upscales_a_portrait_source(tmp_path):
    # 20x10 -> (16, 16): scale 1.6 covers the width, the middle 10 of 20 rows are kept.
    image = np.zeros((20, 10, 3), np.uint8)
    image[:5], image[15:] = 255, 128  # top and bottom quarters are cropped away
    out = read_video(save_image(tmp_path / "p.png", image), size=(16, 16))
    assert out.shape == (1, 16, 16, 3) and out[0, 2:-2].max() < 10


def test_exact_size_is_not_resampled(tmp_path):
    video = moving_square(frames=2)
    path = write_video(tmp_path / "c.gif", video)
    np.testing.assert_array_equal(read_video(path, size=(64, 64)), read_video(path))


# ----------------------------------------------------------------------------------------- masks


def test_mask_from_image_is_soft_resized_and_shared_by_all_frames(tmp_path):
    mask = np.zeros((40, 80), np.uint8)
    mask[:, 20:40], mask[:, 40:60] = 255, 128  # left half of the centre: 1, right half: ~0.5
    out = read_mask(save_image(tmp_path / "m.png", mask), num_frames=3, size=(20, 20))
    assert out.shape == (3, 20, 20) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_allclose(out[0, :, 1:9], 1.0, atol=1e-6)  # column 0 sees the edge
    np.testing.assert_allclose(out[0, :, 11:19], 128 / 255, atol=1e-6)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_mask_from_transparent_image_uses_alpha(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3], rgba[2:6, 2:6, 3] = 255, 255  # white everywhere, opaque only in the middle
    out = read_mask(save_image(tmp_path / "m.png", rgba), num_frames=1, size=(8, 8))
    np.testing.assert_array_equal(out[0] > 0.5, rgba[..., 3] > 0)


def test_mask_from_video_follows_each_frame(tmp_path):
    video = moving_square(frames=6)
    path = write_video(tmp_path / "mask.gif", video)
    out = read_mask(path, num_frames=3, size=(32, 32), frame_stride=2)
    assert out.shape == (3, 32, 32)
    for i, t in enumerate([0, 2, 4]):
        bright = out[i] > 0.8  # the yellow square has luma ~0.89, the background at most ~0.6
        np.testing.assert_allclose(np.argwhere(bright).mean(0), square_centroid(video[t]) / 2, atol=0.75)
    with pytest.raises(VideoError, match=r"mask\.gif: the mask has 6 frames but the video has 8"):
        read_mask(path, num_frames=8, size=(32, 32))


# ----------------------------------------------------------------------------------------- errors


def test_read_errors_name_the_path_and_the_problem(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "fake.mp4").write_text("not a video")
    (tmp_path / "fake.gif").write_text("not a gif")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    save_image(mixed / "0.png", np.zeros((4, 4, 3), np.uint8))
    save_image(mixed / "1.png", np.zeros((4, 5, 3), np.uint8))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0.png").write_text("not a png")
    cases = {
        "missing.mp4": "no such file or folder",
        "notes.txt": "unsupported extension '.txt'",
        "fake.mp4": "cannot read this file",
        "fake.gif": "cannot read this file",
        "empty": "the folder has no frames",
        "mixed": "frames have different sizes",
        "broken": r"0\.png: cannot read this frame",
    }
    for name, problem in cases.items():
        with pytest.raises(VideoError, match=problem) as info:
            read_video(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_too_short_video_says_how_many_frames_it_has(tmp_path):
    path = write_video(tmp_path / "short.mp4", moving_square(frames=5))
    with pytest.raises(VideoError, match=r"short\.mp4: has 5 frames but num_frames=8"):
        read_video(path, num_frames=8)
    with pytest.raises(VideoError, match=r"has 5 frames \(3 with frame_stride 2\) but num_frames=4"):
        read_video(path, num_frames=4, frame_stride=2)


def test_bad_read_arguments():
    for kwargs in [{"num_frames": 0}, {"frame_stride": 0}, {"size": (0, 8)}, {"size": 64}]:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            read_video("anything.mp4", **kwargs)


def test_write_errors(tmp_path):
    ok = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(VideoError, match=r"x\.avi: cannot write '\.avi'"):
        write_video(tmp_path / "x.avi", ok)
    with pytest.raises(VideoError, match="does not exist; create it first"):
        write_video(tmp_path / "no" / "x.mp4", ok)
    bad_frames = {
        "shape": (np.zeros((2, 8, 8), np.uint8), r"\[frames, height, width, 3\]"),
        "dtype": (np.zeros((2, 8, 8, 3), np.int64), "must be uint8, or float"),
        "range": (np.full((2, 8, 8, 3), 255.0), r"float frames must lie in \[0, 1\]"),
        "nan": (np.full((2, 8, 8, 3), np.nan), "NaN"),
    }
    for frames, problem in bad_frames.values():
        with pytest.raises(ValueError, match=problem):
            write_video(tmp_path / "x.mp4", frames)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "x.mp4", ok, fps=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_old_file_and_no_partial_file(tmp_path, monkeypatch, failure):
    target = tmp_path / "edited.mp4"
    target.write_bytes(b"previous video")

    def fail_mid_write(path, video, fps, **kwargs):
        path.write_bytes(b"half a video")
        raise failure

    monkeypatch.setattr(video_io, "_ffmpeg_encode", fail_mid_write)
    with pytest.raises(VideoError if isinstance(failure, OSError) else KeyboardInterrupt):
        write_video(target, moving_square(frames=2))
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == b"previous video"


# ---------------------------------------------------------------------------------- side by side


def test_side_by_side_layout_and_label_ink():
    a = moving_square(frames=3)  # 64x64
    b = np.full((3, 32, 16, 3), 90, np.uint8)  # resized to the first height: 64x32
    grid = side_by_side([a, b, a], ["src", "", "edited"], pad=4)
    text_h = 7  # font scale 1 for 64 px videos
    top = 4 + text_h + 4
    assert grid.shape == (3, top + 64 + 4, 4 + 64 + 4 + 32 + 4 + 64 + 4, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[:, top : top + 64, 4:68], a)
    np.testing.assert_array_equal(grid[:, top : top + 64, 72:104], 90)
    ink = grid[0, ..., 0] == 0  # labels are black on white
    band = ink[4 : 4 + text_h]
    assert band[:, 4:68].sum() > 20 and band[:, 108:172].sum() > 20  # "src" and "edited"
    assert not band[:, 68:108].any()  # no label over the middle video
    assert not ink[:4].any() and not ink[4 + text_h : top].any()
    src_cols = np.nonzero(band[:, 4:68].any(0))[0]
    assert src_cols.min() > 10 and src_cols.max() < 58  # centred: 3 chars = 17 px in 64


def test_side_by_side_scales_and_wraps_long_labels():
    video = np.zeros((1, 256, 256, 3), np.uint8)
    grid = side_by_side([video], ["a long prompt about a red circle rolling on a road"], pad=0)
    # font scale 2 at 256 px: 12 px cells -> 21 characters a line -> 3 lines of 18 px with 4 px gaps
    assert grid.shape == (1, 3 * 14 + 2 * 4 + 256, 256, 3)
    rows_with_ink = (grid[0, : 3 * 14 + 2 * 4, :, 0] == 0).any(1)
    assert rows_with_ink[:14].any() and rows_with_ink[18:32].any() and rows_with_ink[36:50].any()
    assert not rows_with_ink[14:18].any()


def test_side_by_side_errors():
    video = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"same number of frames, got \[2, 3\]"):
        side_by_side([video, np.zeros((3, 8, 8, 3), np.uint8)], ["a", "b"])
    with pytest.raises(ValueError, match="one label per video"):
        side_by_side([video], ["a", "b"])
    with pytest.raises(ValueError, match=r"videos\[1\]"):
        side_by_side([video, video[..., 0]], ["a", "b"])


def test_font_covers_printable_ascii_with_distinct_glyphs():
    printable = [chr(c) for c in range(32, 127)]
    assert sorted(video_io._FONT) == sorted(printable)
    glyphs = {video_io._glyph(c).tobytes() for c in printable}
    assert len(glyphs) == len(printable)
    assert all(video_io._glyph(c).shape == (7, 5) for c in printable)
    np.testing.assert_array_equal(video_io._glyph("é"), video_io._glyph("?"))
