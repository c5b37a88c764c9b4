"""Weight-free metrics of toy-world videos: object mask, colour, shape, size, trajectory, background, flicker.

Every function takes videos ``[..., F, H, W, 3]``, uint8 or float in [0, 1], with any leading batch axes
``...``, and returns per-video values ``[...]`` (or per-frame ones ``[..., F, ...]``); all are pure JAX and
jit-able. They read one object per video (the single-object videos of :mod:`ieadapt_jax.toy.world`; with
two objects the mask is their union and the colour, shape and size describe that union).

How a video is read, step by step (colours are RGB in [0, 1], distances Euclidean in that cube):

1. **Background** ``bg [H, W, 3]``: per column, the median over all frames of the top and bottom
   :data:`BORDER` rows. So the background may change from column to column (plain backgrounds and left|right
   splits, all the toy world draws) but not along a column or over time; an object covering a column's border
   rows in under half of the samples does not move the median.
2. **Contrast** ``d = |v - bg|`` per pixel and frame. The **object colour** ``o`` is the mean colour of the
   pixels (all frames) with ``d >= CORE max(d)``: the object's core, little touched by edge blending.
3. **Coverage** ``alpha`` in [0, 1] per pixel: the projection of ``v - bg`` on ``o - bg``,
   ``<v - bg, o - bg> / |o - bg|^2`` clipped to [0, 1], set to 0 where ``d < NOISE`` (also everywhere when
   the video has no pixel with ``d >= MIN_CONTRAST``: no object). For a rendered pixel
   ``v = a o + (1 - a) bg`` this is exactly its coverage ``a``, whatever the background tone under it.
   Noise is then removed: a pixel is *solid* if its projection is >= 0.5 and at least :data:`SPECK` pixels
   of its 3x3 neighbourhood (itself included) are too; coverage is kept only within one pixel (3x3) of a
   solid pixel, which holds every anti-aliased edge of a drawn shape and drops isolated specks.
4. **Mask**: ``alpha >= 0.5``. **Region** (what "outside the object" excludes): ``alpha > 0`` dilated by
   one pixel (3x3), which takes in the faintest anti-aliased edge.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import world

BORDER = 2  # rows at the top and at the bottom of each frame that sample the background
CORE = 0.8  # object colour: pixels with contrast >= CORE * the video's largest contrast
NOISE = 0.1  # contrast below which a pixel is background
MIN_CONTRAST = 0.2  # a video whose largest contrast is below this has no object
SPECK = 3  # a solid pixel needs this many solid pixels in its 3x3 neighbourhood (itself included)
MIN_AREA = 1.0  # a frame's object needs this much coverage (px) for a centroid and shape features
# Motion: least-squares travel of the centroid over the video that counts as moving, and the vertical range
# (px) that makes a non-travelling object bouncing; half of what the toy world draws.
MOVE_PX = world.TRAVEL / 2
BOUNCE_PX = world.BOUNCE_HEIGHT / 2
# Shape prototypes in the (fill, offset) feature plane, from the shapes' geometry (see shape_features).
SHAPE_PROTOTYPES = np.array([[np.pi / 4, 0.0], [1.0, 0.0], [0.5, 1.0 / 6.0], [0.5, 0.0]], np.float32)  # SHAPES order


class Prediction(NamedTuple):
    """Attribute indices read from videos, int32 [...] each, into the name tables of :mod:`world`, and whether
    there is an object to read them from (bool [...]). Where ``present`` is False the indices are the readers'
    fallbacks (hue 0° reads as red, no extent as small, no travel as static) and mean nothing."""

    shape: jax.Array
    colour: jax.Array
    size: jax.Array
    motion: jax.Array
    present: jax.Array


# ------------------------------------------------------------------------------------------ batching


def as_float(video) -> jax.Array:
    """float32 video in [0, 1] from uint8 (divided by 255) or float (as is)."""
    video = jnp.asarray(video)
    if video.dtype == jnp.uint8:
        return video.astype(jnp.float32) / 255.0
    return video.astype(jnp.float32)


def _per_video(fn: Callable) -> Callable:
    """Make ``fn`` of float videos [F, H, W, 3] take (equal-shaped) videos [..., F, H, W, 3], uint8 or float.

    The result is jit-compiled (once per input shape and dtype).
    """
    @jax.jit
    @functools.wraps(fn)
    def batched(*videos):
        videos = [as_float(v) for v in videos]
        shape = videos[0].shape
        if len(shape) < 4 or shape[-1] != 3 or any(v.shape != shape for v in videos):
            raise ValueError(f"{fn.__name__} needs RGB videos [..., F, H, W, 3] of one shape; "
                             f"got {[tuple(v.shape) for v in videos]}")
        lead = shape[:-4]
        flat = [v.reshape((-1,) + shape[-4:]) for v in videos]  # [N, F, H, W, 3]
        out = jax.vmap(fn)(*flat)
        return jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), out)  # [..., *per-video shape]
    return batched


# -------------------------------------------------------------------------------- per-video analysis


def _background(video: jax.Array) -> jax.Array:
    """float32 [H, W, 3]: per-column median of the border rows over all frames, repeated down the column."""
    frames, height, width, _ = video.shape
    rows = jnp.concatenate([video[:, :BORDER], video[:, height - BORDER:]], axis=1)  # [F, 2*BORDER, W, 3]
    samples = rows.transpose(2, 0, 1, 3).reshape(width, -1, 3)  # [W, F*2*BORDER, 3]
    column = jnp.median(samples, axis=1)  # [W, 3]
    return jnp.broadcast_to(column[None], (height, width, 3))


def _alpha(video: jax.Array) -> jax.Array:
    """float32 [F, H, W]: object coverage per pixel (module docstring, steps 1-3)."""
    bg = _background(video)  # [H, W, 3]
    difference = video - bg  # [F, H, W, 3]
    contrast = jnp.linalg.norm(difference, axis=-1)  # [F, H, W]
    peak = jnp.max(contrast)
    core = (contrast >= CORE * peak)[..., None]  # [F, H, W, 1]
    colour = jnp.sum(video * core, axis=(0, 1, 2)) / jnp.maximum(jnp.sum(core), 1.0)  # [3]
    towards = colour - bg  # [H, W, 3]
    alpha = jnp.sum(difference * towards, -1) / jnp.maximum(jnp.sum(towards * towards, -1), 1e-6)
    alpha = jnp.where(contrast >= NOISE, jnp.clip(alpha, 0.0, 1.0), 0.0)
    solid = alpha >= 0.5
    solid = solid & (_box3(solid) >= SPECK)
    near_solid = _box3(solid) > 0  # [F, H, W]
    return jnp.where(near_solid & (peak >= MIN_CONTRAST), alpha, 0.0)


def _box3(mask: jax.Array) -> jax.Array:
    """float32 [F, H, W]: how many pixels of each 3x3 neighbourhood (itself included) are set in ``mask``."""
    return jax.lax.reduce_window(mask.astype(jnp.float32), 0.0, jax.lax.add, (1, 3, 3), (1, 1, 1), "SAME")


def _region(video: jax.Array) -> jax.Array:
    """bool [F, H, W]: pixels with any coverage, dilated by one pixel."""
    return _box3(_alpha(video) > 0.0) > 0


def _profiles(alpha: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Column and row profiles [F, W], [F, H]: the largest coverage in each column / row of each frame."""
    return jnp.max(alpha, axis=1), jnp.max(alpha, axis=2)


def _centroids(alpha: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x, y) coverage-weighted centroid per frame [F, 2] in px (pixel centres at i + 0.5), and its area [F]."""
    _, height, width = alpha.shape
    area = jnp.sum(alpha, axis=(1, 2))  # [F]
    x = jnp.sum(alpha.sum(axis=1) * (jnp.arange(width) + 0.5), axis=-1)
    y = jnp.sum(alpha.sum(axis=2) * (jnp.arange(height) + 0.5), axis=-1)
    return jnp.stack([x, y], axis=-1) / jnp.maximum(area, 1e-6)[:, None], area


# ---------------------------------------------------------------------------------- masks, regions


@_per_video
def background(video: jax.Array) -> jax.Array:
    """float32 [..., H, W, 3]: the estimated background image of each video (module docstring, step 1)."""
    return _background(video)


@_per_video
def object_alpha(video: jax.Array) -> jax.Array:
    """float32 [..., F, H, W] in [0, 1]: the object's coverage of each pixel (module docstring, step 3)."""
    return _alpha(video)


@_per_video
def object_mask(video: jax.Array) -> jax.Array:
    """bool [..., F, H, W]: object pixels, coverage >= 0.5."""
    return _alpha(video) >= 0.5


@_per_video
def mask_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """float32 [...]: per-frame intersection over union of the two videos' object masks, mean over frames.

    A frame where both masks are empty counts as 1.
    """
    ma, mb = _alpha(a) >= 0.5, _alpha(b) >= 0.5
    intersection = jnp.sum(ma & mb, axis=(1, 2))  # [F]
    union = jnp.sum(ma | mb, axis=(1, 2))
    return jnp.mean(jnp.where(union > 0, intersection / jnp.maximum(union, 1), 1.0))


# -------------------------------------------------------------------------------------------- colour


def _hue(rgb: jax.Array) -> jax.Array:
    """Hue in degrees [0, 360) of colours [..., 3]: the angle atan2(sqrt(3) (G - B), 2R - G - B).

    It equals the HSV hue at the six primary and secondary hues (the toy world's colours) and is unchanged
    by mixing a colour with any grey.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return jnp.degrees(jnp.arctan2(jnp.sqrt(3.0) * (g - b), 2.0 * r - g - b)) % 360.0


def _nearest_hue(hue: jax.Array) -> jax.Array:
    """int32 index of the toy colour whose hue is circularly nearest."""
    gap = jnp.abs((hue[..., None] - jnp.asarray(world.COLOUR_HUES) + 180.0) % 360.0 - 180.0)
    return jnp.argmin(gap, axis=-1).astype(jnp.int32)


@_per_video
def object_hue(video: jax.Array) -> jax.Array:
    """float32 [...]: hue in degrees (see :func:`_hue`) of the mean colour of the object's masked pixels."""
    mask = (_alpha(video) >= 0.5)[..., None]  # [F, H, W, 1]
    mean = jnp.sum(video * mask, axis=(0, 1, 2)) / jnp.maximum(jnp.sum(mask), 1.0)  # [3]
    return _hue(mean)


def object_colour(video) -> jax.Array:
    """int32 [...]: index into ``world.COLOURS`` of the named colour with hue nearest :func:`object_hue`."""
    return _nearest_hue(object_hue(video))


# --------------------------------------------------------------------------------------- shape, size


def _shape_features(alpha: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-video means over frames with an object: (fill, offset) [2] and extent []; see :func:`shape_features`."""
    columns, rows = _profiles(alpha)  # [F, W], [F, H]
    width, height = columns.sum(-1), rows.sum(-1)  # [F]
    centroid, area = _centroids(alpha)
    row_centre = jnp.sum(rows * (jnp.arange(alpha.shape[1]) + 0.5), -1) / jnp.maximum(height, 1e-6)
    fill = area / jnp.maximum(width * height, 1e-6)
    offset = (centroid[:, 1] - row_centre) / jnp.maximum(height, 1e-6)
    extent = jnp.maximum(width, height)
    present = area >= MIN_AREA  # [F]
    features = jnp.stack([fill, offset, extent], axis=-1)  # [F, 3]
    mean = jnp.sum(features * present[:, None], 0) / jnp.maximum(jnp.sum(present), 1)
    return mean[:2], mean[2]


@_per_video
def shape_features(video: jax.Array) -> jax.Array:
    """float32 [..., 2]: (fill, offset) of the object, each the mean over frames with an object.

    Per frame, with coverage ``alpha``: the soft width ``w`` is the sum over columns of the column's largest
    coverage, the soft height ``h`` likewise over rows (so both are the bounding box's sides, to sub-pixel
    precision); ``fill = sum(alpha) / (w h)``, the share of the bounding box the object covers; ``offset`` is
    (coverage centroid y - row-profile centre y) / h, how far the mass sits below the box centre. Geometry
    gives circle (pi/4, 0), square (1, 0), triangle (1/2, 1/6: its centroid is 2/3 down from the apex) and
    diamond (1/2, 0): :data:`SHAPE_PROTOTYPES`.
    """
    return _shape_features(_alpha(video))[0]


def shape_class(video) -> jax.Array:
    """int32 [...]: index into ``world.SHAPES`` of the prototype nearest (Euclidean) the shape features."""
    features = shape_features(video)
    distance = jnp.linalg.norm(features[..., None, :] - SHAPE_PROTOTYPES, axis=-1)  # [..., 4]
    return jnp.argmin(distance, axis=-1).astype(jnp.int32)


@_per_video
def object_extent(video: jax.Array) -> jax.Array:
    """float32 [...]: the object's larger bounding-box side in px (the soft one of :func:`shape_features`),
    mean over frames with an object."""
    return _shape_features(_alpha(video))[1]


def size_class(video) -> jax.Array:
    """int32 [...]: index into ``world.SIZES`` of the size whose bounding box side is nearest the extent."""
    sides = 2.0 * jnp.asarray(world.HALF_EXTENTS)
    return jnp.argmin(jnp.abs(object_extent(video)[..., None] - sides), axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------------------------- trajectory, motion


@_per_video
def centroid_trajectory(video: jax.Array) -> jax.Array:
    """float32 [..., F, 2]: (x, y) coverage-weighted object centroid per frame in px; NaN where the frame
    has less than ``MIN_AREA`` px of object. Pixel (row i, column j) has its centre at (j + 0.5, i + 0.5)."""
    centroid, area = _centroids(_alpha(video))
    return jnp.where((area >= MIN_AREA)[:, None], centroid, jnp.nan)


def centroid_error(a, b) -> jax.Array:
    """float32 [...]: mean over frames (with an object in both videos) of the centroid distance in px.

    NaN when no frame has an object in both.
    """
    gap = jnp.linalg.norm(centroid_trajectory(a) - centroid_trajectory(b), axis=-1)  # [..., F]
    return jnp.nanmean(gap, axis=-1)


def _travel(trajectory: jax.Array) -> jax.Array:
    """float32 [..., 2]: least-squares slope of the trajectory [..., F, 2] times (F - 1), NaN frames skipped."""
    frames = trajectory.shape[-2]
    valid = ~jnp.isnan(trajectory[..., :1])  # [..., F, 1]
    t = jnp.arange(frames, dtype=jnp.float32)[:, None]  # [F, 1]
    n = jnp.maximum(valid.sum(-2, keepdims=True), 1)
    t_mean = jnp.sum(t * valid, -2, keepdims=True) / n
    c = jnp.where(valid, trajectory, 0.0)
    c_mean = jnp.sum(c, -2, keepdims=True) / n
    dt = (t - t_mean) * valid
    slope = jnp.sum(dt * (c - c_mean), -2) / jnp.maximum(jnp.sum(dt * dt, -2), 1e-6)
    return slope * (frames - 1)


def motion_direction(video) -> jax.Array:
    """int32 [...]: index into ``world.MOTIONS`` of the object's motion, read from its centroid trajectory.

    The travel is the least-squares slope of the trajectory (x, y) times (F - 1). Travel of at least
    :data:`MOVE_PX` px: the straight motion whose direction is nearest in angle (image y points down, so
    "up" is -y). Otherwise "bouncing" if the vertical range (max - min of y) is at least :data:`BOUNCE_PX`,
    else "static".
    """
    trajectory = centroid_trajectory(video)  # [..., F, 2]
    travel = _travel(trajectory)
    directions = jnp.asarray(world.DIRECTIONS[:world.BOUNCING])  # [8, 2]
    cosine = (directions @ travel[..., None])[..., 0] / jnp.linalg.norm(directions, axis=-1)  # [..., 8]
    straight = jnp.argmax(cosine, axis=-1)
    y = trajectory[..., 1]
    vertical_range = jnp.nanmax(y, axis=-1) - jnp.nanmin(y, axis=-1)
    still = jnp.where(vertical_range >= BOUNCE_PX, world.BOUNCING, world.STATIC)
    return jnp.where(jnp.linalg.norm(travel, axis=-1) >= MOVE_PX, straight, still).astype(jnp.int32)


@_per_video
def object_present(video: jax.Array) -> jax.Array:
    """bool [...]: whether any frame has at least ``MIN_AREA`` px of object (else every reader falls back)."""
    return jnp.any(_centroids(_alpha(video))[1] >= MIN_AREA)


def classify(video) -> Prediction:
    """All attributes of each video's object: shape, colour, size and motion indices, int32 [...] each, and
    whether an object is there at all."""
    return Prediction(shape_class(video), object_colour(video), size_class(video), motion_direction(video),
                      object_present(video))


# ------------------------------------------------------------------------------ background, flicker


@_per_video
def _outside_error(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean abs error, mean squared error) over channels and pixels outside both videos' regions."""
    outside = (~(_region(a) | _region(b)))[..., None]  # [F, H, W, 1]
    count = jnp.maximum(jnp.sum(outside) * 3, 1)
    difference = (a - b) * outside
    return jnp.sum(jnp.abs(difference)) / count, jnp.sum(difference * difference) / count


def background_mae(a, b) -> jax.Array:
    """float32 [...]: mean absolute difference ([0, 1] units, over RGB channels) between two videos on the
    pixels (all frames) outside both videos' object regions; 0 when the backgrounds agree there."""
    return _outside_error(a, b)[0]


def background_psnr(a, b) -> jax.Array:
    """float32 [...]: PSNR in dB (peak 1) between two videos on the pixels outside both object regions,
    ``10 log10(1 / MSE)``; +inf when they agree exactly there."""
    return 10.0 * jnp.log10(1.0 / _outside_error(a, b)[1])


@_per_video
def temporal_flicker(video: jax.Array) -> jax.Array:
    """float32 [...]: mean absolute frame-to-frame change ([0, 1] units, over RGB channels) of the pixels
    outside the object region in both frames of each consecutive pair; 0 for a still background."""
    outside = ~_region(video)  # [F, H, W]
    both = (outside[1:] & outside[:-1])[..., None]  # [F-1, H, W, 1]
    change = jnp.abs(video[1:] - video[:-1]) * both
    return jnp.sum(change) / jnp.maximum(jnp.sum(both) * 3, 1)
