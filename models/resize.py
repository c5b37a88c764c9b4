"""Image resizing that reproduces the metric references' preprocessing exactly, in JAX.

Evaluation metrics are only comparable when their preprocessing is the reference's, down to the
rounding of each uint8 pixel. Two families of resizers are in use and both are here:

- **Pillow** (``Image.resize``): what transformers' ``CLIPImageProcessorPil`` (the CLIP processor used
  by torchmetrics' CLIPScore and diffusers' evaluation guide when torchvision is absent) and OpenAI
  CLIP's own ``preprocess`` run. Antialiased separable convolution with fixed-point coefficients,
  horizontal pass then vertical pass, each rounded to uint8. :func:`resize_like_pil` does the same
  integer arithmetic (22-bit coefficients, the same rounding), so its output is bit-identical.
- **torch** (``torch.nn.functional.interpolate``, ``align_corners=False``, no antialias): what
  ``torchvision.transforms.Resize`` runs on tensors (VBench's DINO and CLIP transforms) and what ViT
  position-embedding interpolation runs. :func:`resize_like_torch` computes the same taps and weights in
  float32 (width first, then height, as torch's kernel does) and, for uint8 images, clamps and rounds
  half to even as torchvision does.

Images are channels-last ``[..., H, W, C]`` with any leading axes (frames, videos). Tap tables are
computed on the host with numpy (they depend only on static sizes), then applied with a gather and a
fixed-order weighted sum.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Pillow's fixed-point precision for 8-bit images (libImaging/Resample.c: 32 - 8 - 2).
PIL_PRECISION_BITS = 22
PIL_FILTERS = ("bicubic", "bilinear")
TORCH_MODES = ("bicubic", "bilinear")
_TORCH_CUBIC_A = -0.75
_PIL_CUBIC_A = -0.5


def shortest_edge_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) after resizing the shorter edge to ``size``, the longer to ``int(size * long / short)``:
    the rule of ``torchvision.transforms.Resize(int)`` and transformers' ``shortest_edge``."""
    if height < 1 or width < 1 or size < 1:
        raise ValueError(f"sizes must be positive, got image {height}x{width} and size {size}")
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (new_long, size) if width <= height else (size, new_long)


def center_crop(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Central ``size`` = (h, w) window of ``[..., H, W, C]``, offset ``(H - h) // 2`` (transformers'
    ``center_crop``; torchvision rounds the offset instead, which differs only for odd margins)."""
    H, W = images.shape[-3], images.shape[-2]
    h, w = size
    if h > H or w > W:
        raise ValueError(f"cannot center-crop {h}x{w} from an image of {H}x{W}")
    top, left = (H - h) // 2, (W - w) // 2
    return images[..., top : top + h, left : left + w, :]


# ------------------------------------------------------------------------------------------ Pillow


def _pil_filter(name: str):
    if name == "bicubic":

        def cubic(x):
            a = _PIL_CUBIC_A
            x = abs(x)
            if x < 1.0:
                return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
            if x < 2.0:
                return (((x - 5) * x + 8) * x - 4) * a
            return 0.0

        return cubic, 2.0
    if name == "bilinear":
        return (lambda x: max(0.0, 1.0 - abs(x))), 1.0
    raise ValueError(f"unknown Pillow filter {name!r}; supported: {', '.join(PIL_FILTERS)}")


def pil_taps(in_size: int, out_size: int, filter: str = "bicubic") -> tuple[np.ndarray, np.ndarray]:
    """Pillow's resampling taps along one axis: (index int32 [out, K], coefficient int32 [out, K]).

    As ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` in Pillow's Resample.c: float64 filter
    weights normalised per output pixel, then rounded half away from zero to 22-bit fixed point.
    Unused taps have coefficient 0 (and index 0).
    """
    kernel, support = _pil_filter(filter)
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    inverse = 1.0 / filterscale
    index = np.zeros((out_size, ksize), np.int32)
    coeff = np.zeros((out_size, ksize), np.int32)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [kernel((x + xmin - center + 0.5) * inverse) for x in range(xmax)]
        total = sum(weights)
        for x, w in enumerate(weights):
            w = w / total if total != 0.0 else w
            fixed = w * (1 << PIL_PRECISION_BITS)
            index[xx, x] = xmin + x
            coeff[xx, x] = int(fixed - 0.5) if w < 0 else int(fixed + 0.5)
    return index, coeff


def _pil_pass(images: jax.Array, in_axis: int, index: np.ndarray, coeff: np.ndarray) -> jax.Array:
    """One Pillow pass along ``in_axis`` of uint8/int32 ``images``: int32 out, rounded and clipped to 0..255."""
    x = jnp.moveaxis(images.astype(jnp.int32), in_axis, -1)  # [..., in]
    taps = x[..., jnp.asarray(index)]  # [..., out, K]
    acc = jnp.sum(taps * jnp.asarray(coeff), axis=-1) + (1 << (PIL_PRECISION_BITS - 1))  # exact int32
    out = jnp.clip(acc >> PIL_PRECISION_BITS, 0, 255)
    return jnp.moveaxis(out, -1, in_axis)


def resize_like_pil(images: jax.Array, size: tuple[int, int], filter: str = "bicubic") -> jax.Array:
    """``PIL.Image.resize((w, h), filter)`` of uint8 RGB images ``[..., H, W, C]``, bit-exact, as uint8.

    Pillow resamples one axis, rounds to uint8, then resamples the other (:func:`_pil_pass_order`);
    an unchanged axis is not resampled.
    """
    _check_uint8(images, "resize_like_pil")
    H, W = images.shape[-3], images.shape[-2]
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"target size must be positive, got {size}")
    out = images.astype(jnp.int32)
    width_pass = (out.ndim - 2, *pil_taps(W, w, filter)) if w != W else None
    height_pass = (out.ndim - 3, *pil_taps(H, h, filter)) if h != H else None
    for axis_pass in _pil_pass_order(H, W, h, w, width_pass, height_pass):
        out = _pil_pass(out, *axis_pass)
    return out.astype(jnp.uint8)


def _pil_pass_order(H: int, W: int, h: int, w: int, width_pass, height_pass) -> list:
    """The passes in Pillow's order: width first, except (as measured on Pillow 13) when the height
    shrinks by more than twice as many pixels as the width does, 2 (W - w) < H - h."""
    passes = [width_pass, height_pass]
    if h < H and 2 * (W - w) < H - h:
        passes.reverse()
    return [p for p in passes if p is not None]


# ------------------------------------------------------------------------------------------ torch


def torch_taps(
    in_size: int, out_size: int, mode: str = "bilinear", scale_factor: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """torch ``interpolate`` taps along one axis (align_corners=False, no antialias):
    (index int32 [out, K], weight float32 [out, K]), K = 2 (bilinear) or 4 (bicubic, A = -0.75).

    The source coordinate is ``scale * (i + 0.5) - 0.5`` in float32, with ``scale = in / out``, or
    ``1 / scale_factor`` when interpolate was called with ``scale_factor`` (as DINO's position-embedding
    interpolation is); bilinear clamps it at 0, bicubic clamps the tap indices to the image.
    """
    if mode not in TORCH_MODES:
        raise ValueError(f"unknown torch interpolation mode {mode!r}; supported: {', '.join(TORCH_MODES)}")
    f32 = np.float32
    scale = f32(1.0 / scale_factor) if scale_factor else f32(in_size) / f32(out_size)
    dst = np.arange(out_size, dtype=np.float64)
    src = (np.float64(scale) * (dst + 0.5) - 0.5).astype(f32)  # one rounding: torch's kernel fuses it (FMA)
    if mode == "bilinear":
        src = np.maximum(src, f32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    t = np.clip(src - i0.astype(f32), f32(0), f32(1)).astype(f32)
    if mode == "bilinear":
        index = np.stack([i0, np.minimum(i0 + 1, in_size - 1)], axis=-1)
        weight = np.stack([f32(1) - t, t], axis=-1)
    else:
        a = f32(_TORCH_CUBIC_A)

        def near(x):  # |x| <= 1
            return ((a + f32(2)) * x - (a + f32(3))) * x * x + f32(1)

        def far(x):  # 1 < |x| < 2
            return ((a * x - f32(5) * a) * x + f32(8) * a) * x - f32(4) * a

        u = f32(1) - t
        weight = np.stack([far(t + f32(1)), near(t), near(u), far(u + f32(1))], axis=-1)
        index = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
    return index.astype(np.int32), weight.astype(f32)


def _torch_pass(x: jax.Array, in_axis: int, index: np.ndarray, weight: np.ndarray) -> jax.Array:
    """Weighted taps along ``in_axis`` of float32 ``x``, summed left to right as torch does."""
    x = jnp.moveaxis(x, in_axis, -1)  # [..., in]
    taps = x[..., jnp.asarray(index)]  # [..., out, K]
    w = jnp.asarray(weight)
    acc = taps[..., 0] * w[:, 0]
    for k in range(1, w.shape[1]):
        acc = acc + taps[..., k] * w[:, k]
    return jnp.moveaxis(acc, -1, in_axis)


def resize_like_torch(
    images: jax.Array,
    size: tuple[int, int],
    mode: str = "bilinear",
    *,
    scale_factor: Sequence[float] | None = None,
) -> jax.Array:
    """``torch.nn.functional.interpolate(x, size, mode, align_corners=False)`` on ``[..., H, W, C]``.

    uint8 input is resized as ``torchvision.transforms.functional.resize`` does with ``antialias=False``:
    in float32, then (bicubic) clamped to [0, 255], rounded half to even and cast back to uint8. Float
    input is resized in float32 and returned as float32. ``scale_factor`` = (sh, sw) reproduces a call
    with ``scale_factor`` instead of ``size`` (``size`` must then be ``floor(in * s)``).
    """
    if mode not in TORCH_MODES:
        raise ValueError(f"unknown torch interpolation mode {mode!r}; supported: {', '.join(TORCH_MODES)}")
    H, W = images.shape[-3], images.shape[-2]
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"target size must be positive, got {size}")
    sh, sw = scale_factor if scale_factor is not None else (None, None)
    is_uint8 = images.dtype == jnp.uint8
    x = images.astype(jnp.float32)
    x = _torch_pass(x, x.ndim - 2, *torch_taps(W, w, mode, sw))
    x = _torch_pass(x, x.ndim - 3, *torch_taps(H, h, mode, sh))
    if not is_uint8:
        return x
    if mode == "bicubic":
        x = jnp.clip(x, 0.0, 255.0)
    return jnp.round(x).astype(jnp.uint8)


def _check_uint8(images, what: str) -> None:
    if images.dtype != jnp.uint8 or images.ndim < 3:
        raise ValueError(f"{what} takes uint8 images [..., H, W, C], got {images.dtype} {list(images.shape)}")
