"""CogVideoX's causal 3D VAE (diffusers ``AutoencoderKLCogVideoX``) in Flax NNX, channels-last.

    vae = AutoencoderKLCogVideoX.from_pretrained("snapshot/vae")
    posterior = vae.encode(video)          # video [B, F, H, W, 3] in [-1, 1] -> mean/logvar [B, f, H/8, W/8, 16]
    video = vae.decode(latents)            # [B, f, h, w, 16] -> [B, 4(f-1)+1, 8h, 8w, 3]
    video = vae.decode(latents, tiling=vae.default_tiling())   # spatial tiles, bounded memory
    frames = vae.decode_frames(latents[0]) # one video without the batch axis (what the pipeline calls)

Parameter paths are diffusers' module paths (``encoder.conv_in.conv``, ``encoder.down_blocks.{i}.resnets.{j}.conv1.conv``,
``decoder.up_blocks.{i}.resnets.{j}.norm1.{norm_layer,conv_y.conv,conv_b.conv}``, ``...downsamplers.0.conv``, ...).

What parity with diffusers requires, and this port does exactly as diffusers 0.42.1:

- **Frame chunks with a conv cache.** Encoding runs 8 frames at a time (the first chunk takes the
  remainder too: 9 of 49), decoding 2 latent frames at a time (the first 3 of 13). Every causal conv pads
  time with the previous chunk's last k−1 inputs (the first chunk: its first frame repeated), and
  GroupNorm statistics are per chunk, so whole-sequence processing gives different numbers. The first
  chunk runs on its own, the equal-sized rest in one ``lax.scan`` carrying the cache.
- **Temporal down/up-sampling keeps the first frame of an odd-length chunk** and average-pools
  (repeats) the rest.
- **The decoder's spatial norm** (``norm_layer(f) · conv_y(z) + conv_b(z)``) resizes the chunk's latents z
  to each feature map with torch's nearest rule, first frame separately when the length is odd.
- **Spatial tiling** (:class:`~.cogvideox_tiling.Tiling`, diffusers' ``enable_tiling``): overlapping tiles,
  each over all frame chunks, blended linearly over the overlap in diffusers' order.

The frame-chunk and tile runners are :mod:`.cogvideox_tiling`.

The VAE has no attention. Latent scaling (``config.scaling_factor``) is the caller's business, as in diffusers.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .cogvideox_tiling import Tiling, check_seamless, over_frame_chunks, over_tiles
from .layers import group_norm
from .vae import LatentDistribution

ENCODE_FRAME_BATCH = 8  # diffusers' num_sample_frames_batch_size
DECODE_FRAME_BATCH = 2  # diffusers' num_latent_frames_batch_size
_NORM_EPS = 1e-6  # encoder norm_out and every spatial norm, whatever config.norm_eps says


@dataclasses.dataclass(frozen=True)
class AutoencoderKLCogVideoXConfig:
    """The fields of a diffusers ``AutoencoderKLCogVideoX`` config.json (defaults are diffusers')."""

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: tuple[str, ...] = ("CogVideoXDownBlock3D",) * 4
    up_block_types: tuple[str, ...] = ("CogVideoXUpBlock3D",) * 4
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    latent_channels: int = 16
    layers_per_block: int = 3
    act_fn: str = "silu"
    norm_eps: float = 1e-6
    norm_num_groups: int = 32
    temporal_compression_ratio: float = 4
    sample_height: int = 480
    sample_width: int = 720
    scaling_factor: float = 1.15258426
    shift_factor: float | None = None
    force_upcast: bool = True
    use_quant_conv: bool = False
    use_post_quant_conv: bool = False
    invert_scale_latents: bool = False

    def __post_init__(self):
        if self.act_fn != "silu":
            raise ValueError(f"only act_fn='silu' is supported, got {self.act_fn!r}")
        bad = {t for t in self.down_block_types if t != "CogVideoXDownBlock3D"}
        bad |= {t for t in self.up_block_types if t != "CogVideoXUpBlock3D"}
        if bad:
            raise ValueError(f"unsupported block types {sorted(bad)}: only CogVideoXDownBlock3D / CogVideoXUpBlock3D")
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(f"{len(self.down_block_types)} down and {len(self.up_block_types)} up block types for {n} block_out_channels")
        if self.use_quant_conv or self.use_post_quant_conv:
            raise ValueError("use_quant_conv / use_post_quant_conv are not supported (no CogVideoX checkpoint uses them)")
        levels = math.log2(self.temporal_compression_ratio)
        if levels != int(levels) or not 0 <= levels < n:
            raise ValueError(
                f"temporal_compression_ratio {self.temporal_compression_ratio} must be 2**k with k < {n} (the block count)"
            )

    @property
    def downscale(self) -> int:
        """Pixels per latent along each side (8 for CogVideoX)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_levels(self) -> int:
        """How many down/up blocks also halve/double time (the first ones)."""
        return int(math.log2(self.temporal_compression_ratio))

    @classmethod
    def from_dict(cls, config: dict) -> "AutoencoderKLCogVideoXConfig":
        """From a config.json dict (unknown keys such as ``_class_name`` are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names})


# ---------------------------------------------------------------------------------------------- layers


def _conv3d(cin: int, cout: int, kernel: int, *, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    pad = (kernel - 1) // 2
    return nnx.Conv(cin, cout, (kernel,) * 3, padding=((0, 0), (pad, pad), (pad, pad)), dtype=dtype,
                    param_dtype=dtype, rngs=rngs)


class CogVideoXCausalConv3d(nnx.Module):
    """``conv``: a 3D conv padded causally in time by the previous chunk's cached inputs (or the first frame)."""

    def __init__(self, cin: int, cout: int, kernel: int, *, dtype, rngs: nnx.Rngs):
        self.time_kernel = kernel
        self.conv = _conv3d(cin, cout, kernel, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, cache: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
        """x [B, T, H, W, Cin], cache [B, k−1, H, W, Cin] or None -> ([B, T, H, W, Cout], the next cache)."""
        if self.time_kernel == 1:
            return self.conv(x), None
        past = jnp.repeat(x[:, :1], self.time_kernel - 1, axis=1) if cache is None else cache
        x = jnp.concatenate([past, x], axis=1)  # [B, k−1+T, H, W, Cin]
        return self.conv(x), x[:, -(self.time_kernel - 1):]


def _nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    """torch's ``nearest`` source index for each output index (float32 scale, floor, clamp)."""
    if size_out == size_in:
        return np.arange(size_out)
    if size_out == 2 * size_in:
        return np.arange(size_out) >> 1
    scale = np.float32(size_in) / np.float32(size_out)
    return np.minimum(np.floor(np.arange(size_out, dtype=np.float32) * scale).astype(np.int64), size_in - 1)


def _nearest_resize(x: jax.Array, size: tuple[int, int, int]) -> jax.Array:
    """x [B, T, H, W, C] resized to [B, *size, C] with torch's ``F.interpolate(mode="nearest")``."""
    for axis, out in zip((1, 2, 3), size):
        x = jnp.take(x, jnp.asarray(_nearest_indices(x.shape[axis], out)), axis=axis)
    return x


class CogVideoXSpatialNorm3D(nnx.Module):
    """``norm_layer(f) · conv_y(z) + conv_b(z)`` with the latents z resized to f (first frame apart when odd)."""

    def __init__(self, channels: int, z_channels: int, groups: int, *, dtype, rngs: nnx.Rngs):
        self.norm_layer = group_norm(channels, groups, _NORM_EPS, dtype=dtype, rngs=rngs)
        self.conv_y = CogVideoXCausalConv3d(z_channels, channels, 1, dtype=dtype, rngs=rngs)
        self.conv_b = CogVideoXCausalConv3d(z_channels, channels, 1, dtype=dtype, rngs=rngs)

    def __call__(self, f: jax.Array, z: jax.Array) -> jax.Array:
        """f [B, T, H, W, C], z [B, t, h, w, Cz] -> [B, T, H, W, C]."""
        t, h, w = f.shape[1:4]
        if t > 1 and t % 2 == 1:
            z = jnp.concatenate([_nearest_resize(z[:, :1], (1, h, w)), _nearest_resize(z[:, 1:], (t - 1, h, w))], axis=1)
        else:
            z = _nearest_resize(z, (t, h, w))
        return self.norm_layer(f) * self.conv_y(z, None)[0] + self.conv_b(z, None)[0]


class CogVideoXResnetBlock3D(nnx.Module):
    """norm1, SiLU, conv1, norm2, SiLU, conv2, plus the input (through a 1×1×1 ``conv_shortcut`` when channels change).

    The norms are GroupNorms (encoder) or spatial norms conditioned on the latents (decoder).
    """

    def __init__(self, cin: int, cout: int, *, groups: int, eps: float, z_channels: int | None, dtype, rngs: nnx.Rngs):
        if z_channels is None:
            self.norm1 = group_norm(cin, groups, eps, dtype=dtype, rngs=rngs)
            self.norm2 = group_norm(cout, groups, eps, dtype=dtype, rngs=rngs)
        else:
            self.norm1 = CogVideoXSpatialNorm3D(cin, z_channels, groups, dtype=dtype, rngs=rngs)
            self.norm2 = CogVideoXSpatialNorm3D(cout, z_channels, groups, dtype=dtype, rngs=rngs)
        self.conv1 = CogVideoXCausalConv3d(cin, cout, 3, dtype=dtype, rngs=rngs)
        self.conv2 = CogVideoXCausalConv3d(cout, cout, 3, dtype=dtype, rngs=rngs)
        self.conv_shortcut = _conv3d(cin, cout, 1, dtype=dtype, rngs=rngs) if cin != cout else None

    def _norm(self, norm, x, z):
        return norm(x) if z is None else norm(x, z)

    def __call__(self, x, z, cache):
        """x [B, T, H, W, Cin], z latents or None, cache dict or None -> ([B, T, H, W, Cout], cache dict)."""
        cache = cache or {}
        h, c1 = self.conv1(jax.nn.silu(self._norm(self.norm1, x, z)), cache.get("conv1"))
        h, c2 = self.conv2(jax.nn.silu(self._norm(self.norm2, h, z)), cache.get("conv2"))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h, {"conv1": c1, "conv2": c2}


def _run_resnets(resnets, x, z, cache):
    cache = cache or {}
    new = {}
    for j, resnet in enumerate(resnets):
        x, new[f"resnet_{j}"] = resnet(x, z, cache.get(f"resnet_{j}"))
    return x, new


class CogVideoXDownsample3D(nnx.Module):
    """Optionally halve time (first frame of an odd length kept, pairs averaged), then ``conv`` (pad (0,1,0,1), 3×3 stride 2)."""

    def __init__(self, channels: int, *, compress_time: bool, dtype, rngs: nnx.Rngs):
        self.compress_time = compress_time
        self.conv = nnx.Conv(channels, channels, (3, 3), strides=(2, 2), padding=((0, 1), (0, 1)), dtype=dtype,
                             param_dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, H, W, C] -> [B, T', H/2, W/2, C]."""
        if self.compress_time:
            odd = x.shape[1] % 2
            pairs = (x.shape[1] - odd) // 2
            rest = x[:, odd: odd + 2 * pairs].reshape((x.shape[0], pairs, 2) + x.shape[2:])  # [B, T/2, 2, H, W, C]
            x = jnp.concatenate([x[:, :odd], rest.mean(axis=2)], axis=1)  # first frame of an odd length kept
        b, t = x.shape[:2]
        out = self.conv(x.reshape((b * t,) + x.shape[2:]))  # [B·T, H/2, W/2, C]
        return out.reshape((b, t) + out.shape[1:])


class CogVideoXUpsample3D(nnx.Module):
    """Optionally double time (first frame of an odd length kept once), then nearest ×2 in space and ``conv`` (3×3)."""

    def __init__(self, channels: int, *, compress_time: bool, dtype, rngs: nnx.Rngs):
        self.compress_time = compress_time
        self.conv = nnx.Conv(channels, channels, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, H, W, C] -> [B, T', 2H, 2W, C]."""
        t = x.shape[1]
        if self.compress_time and t > 1:
            first = x[:, : t % 2]
            x = jnp.concatenate([first, jnp.repeat(x[:, t % 2:], 2, axis=1)], axis=1)  # [B, 2T − T%2, H, W, C]
        b, t = x.shape[:2]
        x = x.reshape((b * t,) + x.shape[2:])  # [B·T, H, W, C]
        out = self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))  # [B·T, 2H, 2W, C]
        return out.reshape((b, t) + out.shape[1:])


class CogVideoXDownBlock3D(nnx.Module):
    """``resnets`` then, except in the last block, ``downsamplers.0``."""

    def __init__(self, cin, cout, *, layers, groups, eps, downsample, compress_time, dtype, rngs):
        self.resnets = nnx.List([
            CogVideoXResnetBlock3D(cin if j == 0 else cout, cout, groups=groups, eps=eps, z_channels=None, dtype=dtype, rngs=rngs)
            for j in range(layers)
        ])
        self.downsamplers = nnx.List(
            [CogVideoXDownsample3D(cout, compress_time=compress_time, dtype=dtype, rngs=rngs)] if downsample else []
        )

    def __call__(self, x, cache):
        x, cache = _run_resnets(self.resnets, x, None, cache)
        for down in self.downsamplers:
            x = down(x)
        return x, cache


class CogVideoXMidBlock3D(nnx.Module):
    """Two resnets (spatially normed in the decoder)."""

    def __init__(self, channels, *, groups, eps, z_channels, dtype, rngs):
        self.resnets = nnx.List([
            CogVideoXResnetBlock3D(channels, channels, groups=groups, eps=eps, z_channels=z_channels, dtype=dtype, rngs=rngs)
            for _ in range(2)
        ])

    def __call__(self, x, z, cache):
        return _run_resnets(self.resnets, x, z, cache)


class CogVideoXUpBlock3D(nnx.Module):
    """``resnets`` (spatially normed) then, except in the last block, ``upsamplers.0``."""

    def __init__(self, cin, cout, *, layers, groups, eps, z_channels, upsample, compress_time, dtype, rngs):
        self.resnets = nnx.List([
            CogVideoXResnetBlock3D(cin if j == 0 else cout, cout, groups=groups, eps=eps, z_channels=z_channels,
                                   dtype=dtype, rngs=rngs)
            for j in range(layers)
        ])
        self.upsamplers = nnx.List(
            [CogVideoXUpsample3D(cout, compress_time=compress_time, dtype=dtype, rngs=rngs)] if upsample else []
        )

    def __call__(self, x, z, cache):
        x, cache = _run_resnets(self.resnets, x, z, cache)
        for up in self.upsamplers:
            x = up(x)
        return x, cache


class CogVideoXEncoder3D(nnx.Module):
    """conv_in -> down_blocks -> mid_block -> norm_out, SiLU -> conv_out (2 × latent channels); one frame chunk per call."""

    def __init__(self, config: AutoencoderKLCogVideoXConfig, *, dtype, rngs: nnx.Rngs):
        chans, groups, eps = config.block_out_channels, config.norm_num_groups, config.norm_eps
        self.conv_in = CogVideoXCausalConv3d(config.in_channels, chans[0], 3, dtype=dtype, rngs=rngs)
        self.down_blocks = nnx.List([
            CogVideoXDownBlock3D(chans[max(i - 1, 0)], chans[i], layers=config.layers_per_block, groups=groups, eps=eps,
                                 downsample=i < len(chans) - 1, compress_time=i < config.temporal_levels,
                                 dtype=dtype, rngs=rngs)
            for i in range(len(chans))
        ])
        self.mid_block = CogVideoXMidBlock3D(chans[-1], groups=groups, eps=eps, z_channels=None, dtype=dtype, rngs=rngs)
        self.norm_out = group_norm(chans[-1], groups, _NORM_EPS, dtype=dtype, rngs=rngs)
        self.conv_out = CogVideoXCausalConv3d(chans[-1], 2 * config.latent_channels, 3, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, cache: dict | None) -> tuple[jax.Array, dict]:
        """x [B, T, H, W, Cin] (one chunk), cache from the previous chunk or None -> (moments, cache)."""
        cache = cache or {}
        new = {}
        x, new["conv_in"] = self.conv_in(x, cache.get("conv_in"))
        for i, block in enumerate(self.down_blocks):
            x, new[f"down_block_{i}"] = block(x, cache.get(f"down_block_{i}"))
        x, new["mid_block"] = self.mid_block(x, None, cache.get("mid_block"))
        x, new["conv_out"] = self.conv_out(jax.nn.silu(self.norm_out(x)), cache.get("conv_out"))
        return x, new


class CogVideoXDecoder3D(nnx.Module):
    """conv_in -> mid_block -> up_blocks -> norm_out (spatial), SiLU -> conv_out; one latent chunk per call."""

    def __init__(self, config: AutoencoderKLCogVideoXConfig, *, dtype, rngs: nnx.Rngs):
        chans = tuple(reversed(config.block_out_channels))
        groups, eps, latent = config.norm_num_groups, config.norm_eps, config.latent_channels
        self.conv_in = CogVideoXCausalConv3d(latent, chans[0], 3, dtype=dtype, rngs=rngs)
        self.mid_block = CogVideoXMidBlock3D(chans[0], groups=groups, eps=eps, z_channels=latent, dtype=dtype, rngs=rngs)
        self.up_blocks = nnx.List([
            CogVideoXUpBlock3D(chans[max(i - 1, 0)], chans[i], layers=config.layers_per_block + 1, groups=groups, eps=eps,
                               z_channels=latent, upsample=i < len(chans) - 1, compress_time=i < config.temporal_levels,
                               dtype=dtype, rngs=rngs)
            for i in range(len(chans))
        ])
        self.norm_out = CogVideoXSpatialNorm3D(chans[-1], latent, groups, dtype=dtype, rngs=rngs)
        self.conv_out = CogVideoXCausalConv3d(chans[-1], config.out_channels, 3, dtype=dtype, rngs=rngs)

    def __call__(self, z: jax.Array, cache: dict | None) -> tuple[jax.Array, dict]:
        """z [B, t, h, w, latent] (one chunk), cache or None -> (frames [B, T, H, W, out], cache)."""
        cache = cache or {}
        new = {}
        x, new["conv_in"] = self.conv_in(z, cache.get("conv_in"))
        x, new["mid_block"] = self.mid_block(x, z, cache.get("mid_block"))
        for i, block in enumerate(self.up_blocks):
            x, new[f"up_block_{i}"] = block(x, z, cache.get(f"up_block_{i}"))
        x, new["conv_out"] = self.conv_out(jax.nn.silu(self.norm_out(x, z)), cache.get("conv_out"))
        return x, new


class AutoencoderKLCogVideoX(nnx.Module):
    """diffusers ``AutoencoderKLCogVideoX``: ``encoder`` and ``decoder`` run over frame chunks (see module docstring)."""

    def __init__(self, config: AutoencoderKLCogVideoXConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.encoder = CogVideoXEncoder3D(config, dtype=dtype, rngs=rngs)
        self.decoder = CogVideoXDecoder3D(config, dtype=dtype, rngs=rngs)

    def default_tiling(self) -> Tiling:
        """diffusers' ``enable_tiling()`` defaults: tiles of half the config's sample size."""
        return Tiling(self.config.sample_height // 2, self.config.sample_width // 2)

    def encode(self, x: jax.Array, *, tiling: Tiling | None = None) -> LatentDistribution:
        """Videos x [B, F, H, W, in_channels] in [-1, 1] -> the latent Gaussian [B, f, H/d, W/d, latent_channels]."""
        self._check(x, self.config.in_channels, "videos")
        run = functools.partial(over_frame_chunks, self.encoder, frame_batch=ENCODE_FRAME_BATCH)
        height, width = x.shape[2:4]
        if tiling is not None and (width > tiling.sample_width or height > tiling.sample_height):
            d = self.config.downscale
            latent_tile = (int(tiling.sample_height / d), int(tiling.sample_width / d))
            blend = (int(latent_tile[0] * tiling.overlap_height), int(latent_tile[1] * tiling.overlap_width))
            stride = (int(tiling.sample_height * (1 - tiling.overlap_height)), int(tiling.sample_width * (1 - tiling.overlap_width)))
            keep = (latent_tile[0] - blend[0], latent_tile[1] - blend[1])
            check_seamless(tiling, "encoding", stride, tuple(k * d for k in keep), "pixels")
            moments = over_tiles(run, x, (tiling.sample_height, tiling.sample_width), stride, blend, keep)
        else:
            moments = run(x)
        mean, logvar = jnp.split(moments, 2, axis=-1)  # [B, f, h, w, 2L] -> 2 x [B, f, h, w, L]
        return LatentDistribution(mean, jnp.clip(logvar, -30.0, 20.0))

    def decode(self, z: jax.Array, *, tiling: Tiling | None = None) -> jax.Array:
        """Latents z [B, f, h, w, latent_channels] -> videos [B, F, h·d, w·d, out_channels] (F = 4(f−1)+1 for CogVideoX)."""
        self._check(z, self.config.latent_channels, "latents")
        run = functools.partial(over_frame_chunks, self.decoder, frame_batch=DECODE_FRAME_BATCH)
        height, width = z.shape[2:4]
        d = self.config.downscale
        if tiling is not None:
            latent_tile = (int(tiling.sample_height / d), int(tiling.sample_width / d))
            if width > latent_tile[1] or height > latent_tile[0]:
                blend = (int(tiling.sample_height * tiling.overlap_height), int(tiling.sample_width * tiling.overlap_width))
                stride = (int(latent_tile[0] * (1 - tiling.overlap_height)), int(latent_tile[1] * (1 - tiling.overlap_width)))
                keep = (tiling.sample_height - blend[0], tiling.sample_width - blend[1])
                check_seamless(tiling, "decoding", tuple(s * d for s in stride), keep, "pixels")
                return over_tiles(run, z, latent_tile, stride, blend, keep)
        return run(z)

    def encode_frames(self, frames: jax.Array, *, tiling: Tiling | None = None) -> LatentDistribution:
        """One video's frames [F, H, W, C] -> the latent Gaussian [f, h, w, latent_channels]."""
        mean, logvar = self.encode(frames[None], tiling=tiling)
        return LatentDistribution(mean[0], logvar[0])

    def decode_frames(self, latents: jax.Array, *, tiling: Tiling | None = None) -> jax.Array:
        """One video's latents [f, h, w, latent_channels] -> frames [F, H, W, out_channels] in about [-1, 1]."""
        return self.decode(latents[None], tiling=tiling)[0]

    def _check(self, x: jax.Array, channels: int, what: str) -> None:
        if x.ndim != 5 or x.shape[-1] != channels:
            raise ValueError(f"{what} must be [B, T, H, W, {channels}] (channels-last), got shape {list(x.shape)}")
