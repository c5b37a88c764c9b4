"""Video I/O: read videos and masks at the model's size, write mp4/gif atomically, labelled grids.

    video = read_video("dog.mp4", num_frames=16, size=(512, 512))     # uint8 [16, 512, 512, 3]
    mask = read_mask("dog_mask.png", num_frames=16, size=(512, 512))  # float32 [16, 512, 512]
    write_video("out/edited.mp4", video, fps=8)
    write_video("out/side_by_side.gif", side_by_side([video, edited], ["source", "edited"]))

Sources: video files (.mp4, .mov, .m4v, .mkv, .webm, .avi; decoded by imageio-ffmpeg), animated .gif and
images (.png, .jpg, .jpeg, .bmp, .webp; one frame, or each frame of an animated one; decoded by Pillow),
and folders of images (frames in natural order of their file names: frame2 before frame10). Every
problem with a file raises :class:`VideoError` naming the path.

Resizing: the short side is scaled to cover the target size, then the centre is cropped. Both steps are one
Pillow resample of the centred source box, so there is no intermediate rounding: video frames use Lanczos
(antialiased when shrinking), masks use (antialiased) bilinear, which never leaves [0, 1].

Writing: mp4 is H.264 (libx264, yuv420p, CRF 18) and needs even sizes, so odd heights/widths get one
replicated edge row/column (a 33x47 video is stored as 34x48). GIF goes through ffmpeg with one palette
for the whole video (palettegen/paletteuse, ordered Bayer dithering, stable over frames); every frame is
kept, also repeated ones; GIF stores delays in 1/100 s, so the frame rate is rounded to that.
"""
from __future__ import annotations

import contextlib
import importlib.resources
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import imageio_ffmpeg
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageSequence

from .core.errors import IEAdaptError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
GIF_EXTENSION = ".gif"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
WRITE_EXTENSIONS = (".mp4", ".gif")
READ_EXTENSIONS = VIDEO_EXTENSIONS + (GIF_EXTENSION,) + IMAGE_EXTENSIONS

# ITU-R BT.601 luma weights (what Pillow's "L" conversion uses): RGB masks become grey.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# What Pillow and imageio-ffmpeg raise on corrupt or truncated input.
_DECODE_ERRORS = (OSError, RuntimeError, ValueError, EOFError, SyntaxError)
# Float frames this far outside [0, 1] are a mistake (0..255 or [-1, 1] data), not rounding error.
_FLOAT_SLACK = 0.01


class VideoError(IEAdaptError):
    """A video, image, mask or output path that cannot be used; the message names the path."""


# ----------------------------------------------------------------------------------------- reading


def read_video(
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    size: tuple[int, int] | None = None,
    frame_stride: int = 1,
) -> np.ndarray:
    """Read a video file, animated GIF, image or folder of frames as RGB uint8.

    Args:
      path: a video file (mp4, mov, m4v, mkv, webm, avi), a .gif, an image (one frame), or a folder of
        png/jpg/bmp/webp frames taken in natural file-name order.
      num_frames: keep the first ``num_frames`` frames after striding (all when None); a video with fewer
        is an error that says how many it has.
      size: (H, W) to resize to: the short side covers the target, the centre is cropped (Lanczos).
      frame_stride: keep every ``frame_stride``-th frame, starting with the first.

    Returns:
      uint8 [F, H, W, 3]. Greyscale becomes RGB; alpha is composited over black; 16-bit images are
      reduced to 8 bits.

    Raises:
      VideoError: missing or unreadable path, unsupported extension, no frames, too few frames, or
        frames of different sizes in a folder.
    """
    path = Path(path)
    _check_read_args(num_frames, size, frame_stride)
    frames, count = _take_frames(path, _frame_source(path), frame_stride, num_frames)  # [h, w, C] each
    if num_frames is not None and len(frames) < num_frames:
        strided = f" ({len(frames)} with frame_stride {frame_stride})" if frame_stride > 1 else ""
        raise VideoError(
            f"{path}: has {count} frames{strided} but num_frames={num_frames} were requested; "
            "ask for fewer frames" + (" or a smaller frame_stride" if frame_stride > 1 else "")
        )
    rgb = [_to_rgb_uint8(frame, path) for frame in frames]
    _check_same_size(path, rgb)
    if size is not None:
        rgb = [_resize_rgb(frame, size) for frame in rgb]
    return np.stack(rgb)  # [F, H, W, 3]


def read_mask(
    path: str | os.PathLike,
    *,
    num_frames: int,
    size: tuple[int, int],
    frame_stride: int = 1,
    sizes: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Read an editing mask as float32 in [0, 1], one per frame; soft values are kept (no threshold).

    Args:
      path: an image (one mask for every frame; a one-frame GIF or video counts as one too), or a video,
        GIF or folder of frames (one mask per frame, read like :func:`read_video`).
      num_frames: number of frames F of the video the mask goes with.
      size: (H, W) of that video; the mask is resized with the same cover-and-centre-crop rule (bilinear).
      frame_stride: the stride used to read the video, applied to a per-frame mask.
      sizes: when given, the (h, w) sizes the mask may have (e.g. the input video's and ``size``); any other
        is refused rather than resized.

    Returns:
      float32 [F, H, W] in [0, 1]: 1 marks the region to edit. Colour masks become their luma (BT.601),
      alpha is multiplied in (so white-on-transparent works).

    Raises:
      VideoError: as :func:`read_video`, including a mask video shorter than ``num_frames``.
    """
    path = Path(path)
    if num_frames is None or size is None:
        raise ValueError("read_mask needs the video's num_frames and size (height, width)")
    _check_read_args(num_frames, size, frame_stride)
    frames, count = _take_frames(path, _frame_source(path), frame_stride, num_frames)
    if len(frames) == 1:
        frames = frames * num_frames
    elif len(frames) < num_frames:
        strided = f" ({len(frames)} with frame_stride {frame_stride})" if frame_stride > 1 else ""
        raise VideoError(
            f"{path}: the mask has {count} frames{strided} but the video has {num_frames}; "
            f"give one mask image, or a mask video with at least {num_frames} frames"
        )
    gray = [_to_gray_unit(frame, path) for frame in frames]  # [h, w] each
    _check_same_size(path, gray)
    found = tuple(gray[0].shape)
    if sizes is not None and found not in {tuple(s) for s in sizes}:
        allowed = " or ".join(f"{h}x{w}" for h, w in dict.fromkeys(tuple(s) for s in sizes))
        raise VideoError(f"{path}: the mask is {found[0]}x{found[1]} (height x width) but must be {allowed}, the "
                         "size of the video it goes with; draw it at that size")
    return np.stack([_resize_gray(mask, size) for mask in gray])  # [F, H, W]


def frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of the first frame of a video, GIF, image or frame folder."""
    path = Path(path)
    frames, _ = _take_frames(path, _frame_source(path), 1, 1)
    return tuple(frames[0].shape[:2])


def _check_read_args(num_frames: int | None, size: tuple[int, int] | None, frame_stride: int) -> None:
    if num_frames is not None and (not isinstance(num_frames, (int, np.integer)) or num_frames < 1):
        raise ValueError(f"num_frames must be a positive integer or None, got {num_frames!r}")
    if not isinstance(frame_stride, (int, np.integer)) or frame_stride < 1:
        raise ValueError(f"frame_stride must be a positive integer, got {frame_stride!r}")
    if size is not None:
        pair = isinstance(size, (tuple, list)) and len(size) == 2
        if not (pair and all(isinstance(s, (int, np.integer)) and s >= 1 for s in size)):
            raise ValueError(f"size must be (height, width) with positive integers, got {size!r}")


def _frame_source(path: Path) -> Iterator[np.ndarray]:
    """Lazy iterator over the raw decoded frames of ``path`` (any dtype, [h, w] or [h, w, C])."""
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        return _iter_folder(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return _iter_ffmpeg(path)
    if suffix == GIF_EXTENSION or suffix in IMAGE_EXTENSIONS:
        return _iter_pillow(path)
    raise VideoError(
        f"{path}: unsupported extension {path.suffix or '(none)'!r}; "
        f"use one of {', '.join(READ_EXTENSIONS)} or a folder of frames"
    )


def _iter_ffmpeg(path: Path) -> Iterator[np.ndarray]:
    """Frames of a video file decoded by ffmpeg as uint8 [h, w, 3]; ffmpeg stops when closed early."""
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        with _exec_only_fork():
            meta = next(reader)  # starts ffmpeg
        width, height = meta["size"]
        for buffer in reader:
            yield np.frombuffer(buffer, np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


def _iter_pillow(path: Path) -> Iterator[np.ndarray]:
    """Frames of a GIF or image file decoded by Pillow (one for a still image)."""
    with Image.open(path) as image:
        for frame in ImageSequence.Iterator(image):
            yield _pil_to_array(frame)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """A Pillow image -> [h, w] or [h, w, 3 | 4] array; 16-bit stays 16-bit, alpha is kept."""
    if image.mode.startswith("I;16"):
        return np.asarray(image)  # uint16 [h, w]
    if image.mode == "I":  # 16-bit PNGs in older Pillow
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("L" if image.mode in ("1", "L") else "RGB"))


def _iter_folder(path: Path) -> Iterator[np.ndarray]:
    """The image files of a folder in natural name order; hidden files (.name) are skipped."""
    files = sorted(
        (
            f
            for f in path.iterdir()
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
        ),
        key=lambda f: _natural_key(f.name),
    )
    if not files:
        raise VideoError(
            f"{path}: the folder has no frames (no files ending in {', '.join(IMAGE_EXTENSIONS)})"
        )
    for file in files:
        try:
            with Image.open(file) as image:
                yield _pil_to_array(image)
        except _DECODE_ERRORS as exc:
            raise VideoError(f"{file}: cannot read this frame of {path}: {_short(exc)}") from exc


def _natural_key(name: str) -> list:
    """Sort key that orders digit runs by value: frame2 < frame10 (case-insensitive otherwise)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _take_frames(
    path: Path, frames: Iterator[np.ndarray], stride: int, limit: int | None
) -> tuple[list[np.ndarray], int]:
    """Every ``stride``-th frame, at most ``limit`` of them, and the number of frames decoded.

    Decoding stops as soon as the limit is reached; decode failures and no frames at all are VideoError.
    """
    needed = None if limit is None else (limit - 1) * stride + 1
    taken, count = [], 0
    try:
        for frame in frames:
            if count % stride == 0:
                taken.append(np.asarray(frame))
            count += 1
            if count == needed:
                break
    except VideoError:
        raise
    except _DECODE_ERRORS as exc:
        reason = _short(exc)
        raise VideoError(f"{path}: cannot read this file (corrupt, or not a video/image?): {reason}") from exc
    finally:
        frames.close()
    if not taken:
        raise VideoError(f"{path}: no frames could be decoded (empty or corrupt file)")
    return taken, count


def _short(exc: BaseException) -> str:
    """The gist of a decoder error: its first line plus, for ffmpeg, the last lines of its log."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) <= 3:
        return " / ".join(lines) or type(exc).__name__
    return " / ".join([lines[0], "...", *lines[-2:]])


def _check_same_size(path: Path, frames: Sequence[np.ndarray]) -> None:
    sizes = {frame.shape[:2] for frame in frames}
    if len(sizes) > 1:
        raise VideoError(f"{path}: frames have different sizes {sorted(sizes)}; all frames must match")


def _unit_channels(frame: np.ndarray, path: Path) -> np.ndarray:
    """A decoded frame -> float32 [h, w, C] in [0, 1], C = 1 (grey) or 3 (RGB), alpha composited."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 2, 3, 4):
        raise VideoError(f"{path}: cannot use decoded frames of shape {frame.shape} (not grey/RGB/RGBA)")
    unit = frame.astype(np.float32) / np.iinfo(frame.dtype).max  # decoders give uint8 or uint16
    if unit.shape[-1] in (2, 4):  # composite over black: colour * alpha
        unit = unit[..., :-1] * unit[..., -1:]
    return unit


def _to_rgb_uint8(frame: np.ndarray, path: Path) -> np.ndarray:
    """A decoded frame -> uint8 [h, w, 3]."""
    if frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[-1] == 3:
        return frame
    unit = _unit_channels(frame, path)  # [h, w, 1 | 3]
    rgb = np.broadcast_to(unit, unit.shape[:2] + (3,))
    return np.round(rgb * 255.0).astype(np.uint8)


def _to_gray_unit(frame: np.ndarray, path: Path) -> np.ndarray:
    """A decoded frame -> float32 [h, w] in [0, 1]; RGB becomes its BT.601 luma."""
    unit = _unit_channels(frame, path)  # [h, w, 1 | 3]
    gray = unit[..., 0] if unit.shape[-1] == 1 else unit @ _LUMA
    return np.clip(gray, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------- resizing


def _cover_box(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centred source box (left, top, right, bottom) with the target's aspect ratio."""
    (h, w), (H, W) = src_hw, dst_hw
    scale = max(H / h, W / w)  # scaling the short side to cover the target
    box_w, box_h = W / scale, H / scale
    left, top = (w - box_w) / 2, (h - box_h) / 2
    return (left, top, left + box_w, top + box_h)


def _resize_rgb(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [H, W, 3], cover + centre crop, Lanczos."""
    if frame.shape[:2] == tuple(size):
        return frame
    H, W = size
    box = _cover_box(frame.shape[:2], size)
    image = Image.fromarray(frame, mode="RGB")
    return np.asarray(image.resize((W, H), Image.Resampling.LANCZOS, box=box))


def _resize_gray(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 [h, w] -> float32 [H, W] in [0, 1], cover + centre crop, bilinear."""
    if mask.shape == tuple(size):
        return mask
    H, W = size
    box = _cover_box(mask.shape, size)
    image = Image.fromarray(mask, mode="F")
    resized = np.asarray(image.resize((W, H), Image.Resampling.BILINEAR, box=box))
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------- writing


def write_video(path: str | os.PathLike, frames, fps: float = 8) -> Path:
    """Write frames to an .mp4 (H.264) or .gif, atomically.

    The file is written under a temporary name in the same folder and renamed into place, so a failure
    (or an interrupt) leaves any previous file untouched and no partial file behind.

    Args:
      path: output path ending in .mp4 or .gif; its folder must exist.
      frames: uint8 [F, H, W, 3], or float [F, H, W, 3] in [0, 1] (any array-like, e.g. a jax.Array).
      fps: frames per second (> 0).

    Returns:
      The written path.

    Raises:
      VideoError: unsupported extension, missing folder, or the encoder failed.
      ValueError: frames of the wrong shape, dtype or range; a non-positive fps.
    """
    path = Path(path)
    video = _as_uint8_video(frames, "frames")  # [F, H, W, 3]
    if not (isinstance(fps, (int, float, np.integer, np.floating)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    suffix = path.suffix.lower()
    if suffix not in WRITE_EXTENSIONS:
        kind = repr(path.suffix) if path.suffix else "a file without extension"
        raise VideoError(f"{path}: cannot write {kind}; use .mp4 or .gif")
    if not path.parent.is_dir():
        raise VideoError(f"{path}: the folder {path.parent} does not exist; create it first")
    encode = _encode_mp4 if suffix == ".mp4" else _encode_gif
    _atomic_write(path, lambda tmp: encode(tmp, video, float(fps)))
    return path


def _as_uint8_video(frames, name: str) -> np.ndarray:
    """Validate [F, H, W, 3] uint8 or float-in-[0, 1] frames; returns uint8 [F, H, W, 3]."""
    video = np.asarray(frames)  # a jax.Array (also bfloat16) becomes a numpy array
    if video.ndim != 4 or video.shape[-1] != 3 or min(video.shape) == 0:
        raise ValueError(f"{name} must have shape [frames, height, width, 3] (RGB), got {video.shape}")
    if video.dtype == np.uint8:
        return video
    if not jnp.issubdtype(video.dtype, jnp.floating):
        raise ValueError(
            f"{name} must be uint8, or float in [0, 1]; got {video.dtype} (convert with .astype(np.uint8) "
            "if the values are 0..255)"
        )
    video = video.astype(np.float32)
    lo, hi = float(np.min(video)), float(np.max(video))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contain NaN or infinity")
    if lo < -_FLOAT_SLACK or hi > 1 + _FLOAT_SLACK:
        raise ValueError(
            f"float {name} must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; map [-1, 1] data with "
            "(x + 1) / 2 and 0..255 data with x / 255"
        )
    return np.round(np.clip(video, 0.0, 1.0) * 255.0).astype(np.uint8)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a hidden temporary path next to ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        raise VideoError(f"{path}: could not write the video: {_short(exc)}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _encode_mp4(path: Path, video: np.ndarray, fps: float) -> None:
    """H.264 (yuv420p, CRF 18) via ffmpeg; odd sizes get one replicated edge row/column."""
    _, H, W, _ = video.shape
    video = np.pad(video, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")  # [F, even H, even W, 3]
    params = ["-crf", "18", "-preset", "medium", "-movflags", "+faststart"]
    _ffmpeg_encode(path, video, fps, codec="libx264", pix_fmt_out="yuv420p", output_params=params)


def _encode_gif(path: Path, video: np.ndarray, fps: float) -> None:
    """GIF via ffmpeg: one palette from the whole video, ordered dithering, loops forever."""
    palette = "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse=dither=bayer:bayer_scale=4"
    params = ["-filter_complex", palette, "-loop", "0"]
    _ffmpeg_encode(path, video, fps, codec="gif", pix_fmt_out="pal8", output_params=params)


def _ffmpeg_encode(
    path: Path, video: np.ndarray, fps: float, *, codec: str, pix_fmt_out: str, output_params: list[str]
) -> None:
    """Pipe uint8 [F, H, W, 3] frames through ffmpeg into ``path``; ffmpeg is stopped even on failure."""
    _, H, W, _ = video.shape
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (W, H),
        fps=fps,
        codec=codec,
        pix_fmt_out=pix_fmt_out,
        quality=None,
        macro_block_size=1,
        output_params=output_params,
    )
    with _exec_only_fork():
        writer.send(None)  # starts ffmpeg
    try:
        for frame in video:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


@contextlib.contextmanager
def _exec_only_fork():
    """Silence JAX's warning about os.fork() while starting ffmpeg.

    subprocess forks and immediately execs ffmpeg, which is safe next to JAX's threads; the warning is
    about a forked child that keeps running Python.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


# ---------------------------------------------------------------------------------- side by side


def side_by_side(videos: Sequence, labels: Sequence[str], *, pad: int = 4) -> np.ndarray:
    """One row of videos, each with its label drawn above it, on a white background.

    Videos are resized (Lanczos, aspect kept) to the first one's height. Labels are drawn in a built-in
    5x7 bitmap font (printable ASCII; other characters show as '?'), scaled with the video height
    (1 pixel per font dot up to 255 px, then one more per 128 px), wrapped at spaces to the video's width.

    Args:
      videos: uint8 [F, H_i, W_i, 3] or float in [0, 1]; all with the same number of frames F.
      labels: one string per video (may be empty).
      pad: white margin in pixels around and between videos and labels.

    Returns:
      uint8 [F, H', W', 3].
    """
    if len(videos) == 0:
        raise ValueError("side_by_side needs at least one video")
    if len(labels) != len(videos):
        raise ValueError(f"got {len(videos)} videos but {len(labels)} labels; give one label per video")
    if not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    clips = [_as_uint8_video(v, f"videos[{i}]") for i, v in enumerate(videos)]
    counts = [clip.shape[0] for clip in clips]
    if len(set(counts)) > 1:
        raise ValueError(f"all videos must have the same number of frames, got {counts}")
    height = clips[0].shape[1]
    clips = [_resize_to_height(clip, height) for clip in clips]
    scale = _font_scale(height)
    texts = [_render_label(label, clip.shape[2], scale) for label, clip in zip(labels, clips)]  # [h_i, w]
    band = max(text.shape[0] for text in texts)
    top = pad + (band + pad if band else 0)  # row where the videos start
    width = pad + sum(clip.shape[2] + pad for clip in clips)
    canvas = np.full((counts[0], top + height + pad, width, 3), 255, np.uint8)  # [F, H', W', 3]
    left = pad
    for clip, text in zip(clips, texts):
        w = clip.shape[2]
        label_area = canvas[:, pad : pad + text.shape[0], left : left + w]  # a view: [F, h_text, w, 3]
        label_area[:, text] = 0
        canvas[:, top : top + height, left : left + w] = clip
        left += w + pad
    return canvas


def _resize_to_height(clip: np.ndarray, height: int) -> np.ndarray:
    """uint8 [F, h, w, 3] -> uint8 [F, height, round(w * height / h), 3]."""
    h, w = clip.shape[1:3]
    if h == height:
        return clip
    size = (height, max(1, round(w * height / h)))
    return np.stack([_resize_rgb(frame, size) for frame in clip])


_FONT_FILE = "font_5x7.txt"  # package data: ieadapt_jax/data/font_5x7.txt
_GLYPH_H, _GLYPH_W = 7, 5
_CELL_W = _GLYPH_W + 1  # one dot between characters
_LINE_H = _GLYPH_H + 2  # two dots between lines


def _read_font() -> dict[str, np.ndarray]:
    """char -> bool [7, 5] dots (read-only) of the bitmap font for printable ASCII, from the package's
    ``data/font_5x7.txt``: blocks of a ``U+XXXX`` line and 7 rows of 5 dots ('#' is ink); lines starting with
    "# " are comments."""
    text = importlib.resources.files("ieadapt_jax").joinpath("data", _FONT_FILE).read_text(encoding="utf-8")
    glyphs = {}
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith("# ")]
        if not lines:
            continue
        dots = np.array([[dot == "#" for dot in row] for row in lines[1:]], bool)
        if not lines[0].startswith("U+") or dots.shape != (_GLYPH_H, _GLYPH_W):
            raise ValueError(f"ieadapt_jax/data/{_FONT_FILE}: malformed glyph block {lines[0]!r}")
        dots.setflags(write=False)
        glyphs[chr(int(lines[0].split()[0][2:], 16))] = dots
    return glyphs


_FONT = _read_font()  # read once, at import


def _glyph(char: str) -> np.ndarray:
    """bool [7, 5] dots of ``char``; characters outside printable ASCII draw as '?'."""
    return _FONT.get(char, _FONT["?"])


def _font_scale(height: int) -> int:
    """Pixels per font dot for a video of this height: 1 up to 255 px, then one more per 128 px."""
    return max(1, height // 128)


def _wrap(text: str, max_chars: int) -> list[str]:
    """Greedy word wrap to lines of at most ``max_chars``; words longer than a line are split."""
    lines, line = [], ""
    for word in text.split():
        while len(word) > max_chars:
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:max_chars])
            word = word[max_chars:]
        candidate = f"{line} {word}" if line else word
        if len(candidate) <= max_chars:
            line = candidate
        else:
            lines.append(line)
            line = word
    return lines + [line] if line else lines


def _render_label(text: str, width: int, scale: int) -> np.ndarray:
    """bool [lines * 9 * scale - 2 * scale, width] ink of ``text``, each line centred; [0, width] if empty."""
    lines = _wrap(text, max(1, width // (_CELL_W * scale)))
    if not lines:
        return np.zeros((0, width), bool)
    ink = np.zeros((len(lines) * _LINE_H * scale - (_LINE_H - _GLYPH_H) * scale, width), bool)
    for i, line in enumerate(lines):
        dots = np.concatenate([np.pad(_glyph(c), ((0, 0), (0, 1))) for c in line], axis=1)[:, :-1]
        pixels = np.kron(dots, np.ones((scale, scale), bool))[:, :width]  # [7 * scale, <= width]
        left = (width - pixels.shape[1]) // 2
        top = i * _LINE_H * scale
        ink[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return ink
