"""The Stable Diffusion VAE (diffusers ``AutoencoderKL``) in Flax NNX, channels-last.

    vae = load_vae("snapshot/vae")            # ieadapt_jax.convert.folders.load_vae
    posterior = vae.encode(images)            # images [N, H, W, 3] in [-1, 1]
    posterior.mean, posterior.logvar          # [N, H/8, W/8, 4] each (SD1.5: 3 downsamplings)
    images = vae.decode(latents)              # [N, h, w, 4] -> [N, 8h, 8w, 3]
    video = vae.decode_frames(latents, chunk_size=16)   # [F, h, w, 4] -> [F, 8h, 8w, 3], 16 frames at a time

Parameter paths are diffusers' module paths (``encoder.down_blocks.{i}.resnets.{j}.conv1``,
``decoder.mid_block.attentions.0.to_q``, ``quant_conv``, ...). The building blocks are the shared
diffusers-named blocks of :mod:`models.layers`; the mid-block attention of the encoder and of the
decoder (1 head over all pixels, group_norm, residual) goes through the attention core via a
:class:`~ieadapt_jax.SiteContext`, one site each (``encoder.site_table``, ``decoder.site_table``).
Latent scaling (``config.scaling_factor``) is the caller's business, as in diffusers.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from ..core.context import SiteContext
from ..core.sites import SiteTable
from .layers import Attention, Downsample2D, ResnetBlock2D, Upsample2D, group_norm

_EPS = 1e-6  # every GroupNorm of the SD VAE


@dataclasses.dataclass(frozen=True)
class AutoencoderKLConfig:
    """The fields of a diffusers AutoencoderKL config.json (defaults are diffusers')."""

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",)
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",)
    block_out_channels: tuple[int, ...] = (64,)
    layers_per_block: int = 1
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 32
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    force_upcast: bool = True
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True

    def __post_init__(self):
        if self.act_fn != "silu":
            raise ValueError(f"only act_fn='silu' is supported (the SD VAE), got {self.act_fn!r}")
        bad = {t for t in self.down_block_types if t != "DownEncoderBlock2D"} | {
            t for t in self.up_block_types if t != "UpDecoderBlock2D"
        }
        if bad:
            raise ValueError(f"unsupported VAE block types {sorted(bad)}: only DownEncoderBlock2D / UpDecoderBlock2D")
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(
                f"{len(self.down_block_types)} down and {len(self.up_block_types)} up block types "
                f"for {n} block_out_channels"
            )

    @property
    def downscale(self) -> int:
        """Pixels per latent along each side (8 for SD1.5)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, config: dict) -> "AutoencoderKLConfig":
        """From a config.json dict (unknown keys such as ``_class_name`` are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names}
        return cls(**kwargs)


class LatentDistribution(NamedTuple):
    """The encoder's diagonal Gaussian: mean and logvar [N, h, w, latent_channels] (logvar clamped to
    [-30, 20] as diffusers does)."""

    mean: jax.Array
    logvar: jax.Array

    @property
    def std(self) -> jax.Array:
        return jnp.exp(0.5 * self.logvar)

    def sample(self, key: jax.Array) -> jax.Array:
        """mean + std · ε with ε ~ N(0, I) drawn from ``key``."""
        eps = jax.random.normal(key, self.mean.shape, jnp.float32).astype(self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> jax.Array:
        return self.mean


def _conv3x3(cin: int, cout: int, *, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(cin, cout, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype, param_dtype=dtype, rngs=rngs)


def _conv1x1(cin: int, cout: int, *, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(cin, cout, (1, 1), padding="VALID", dtype=dtype, param_dtype=dtype, rngs=rngs)


class DownEncoderBlock2D(nnx.Module):
    """``resnets`` then, except in the last block, a ``downsamplers.0`` (pad (0,1,0,1), stride-2 conv)."""

    def __init__(self, cin: int, cout: int, *, layers: int, groups: int, downsample: bool, dtype, rngs: nnx.Rngs):
        self.resnets = nnx.List(
            [
                ResnetBlock2D(cin if i == 0 else cout, cout, groups=groups, eps=_EPS, dtype=dtype, rngs=rngs)
                for i in range(layers)
            ]
        )
        self.downsamplers = nnx.List([Downsample2D(cout, padding=0, dtype=dtype, rngs=rngs)] if downsample else [])

    def __call__(self, x: jax.Array) -> jax.Array:
        for resnet in self.resnets:
            x = resnet(x)
        for down in self.downsamplers:
            x = down(x)
        return x


class UpDecoderBlock2D(nnx.Module):
    """``resnets`` then, except in the last block, an ``upsamplers.0`` (nearest x2, 3x3 conv)."""

    def __init__(self, cin: int, cout: int, *, layers: int, groups: int, upsample: bool, dtype, rngs: nnx.Rngs):
        self.resnets = nnx.List(
            [
                ResnetBlock2D(cin if i == 0 else cout, cout, groups=groups, eps=_EPS, dtype=dtype, rngs=rngs)
                for i in range(layers)
            ]
        )
        self.upsamplers = nnx.List([Upsample2D(cout, dtype=dtype, rngs=rngs)] if upsample else [])

    def __call__(self, x: jax.Array) -> jax.Array:
        for resnet in self.resnets:
            x = resnet(x)
        for up in self.upsamplers:
            x = up(x)
        return x


class UNetMidBlock2D(nnx.Module):
    """resnets.0 -> attentions.0 (1 head over all pixels, group_norm, residual) -> resnets.1."""

    def __init__(self, channels: int, *, groups: int, attention: bool, dtype, rngs: nnx.Rngs):
        self.resnets = nnx.List(
            [ResnetBlock2D(channels, channels, groups=groups, eps=_EPS, dtype=dtype, rngs=rngs) for _ in range(2)]
        )
        self.attentions = nnx.List(
            [
                Attention(
                    channels,
                    heads=1,
                    dim_head=channels,
                    site=0,
                    bias=True,
                    norm_num_groups=groups,
                    norm_eps=_EPS,
                    residual_connection=True,
                    dtype=dtype,
                    rngs=rngs,
                )
            ]
            if attention
            else []
        )

    def __call__(self, x: jax.Array, ctx: SiteContext) -> jax.Array:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x, ctx)
        return self.resnets[1](x)


def _site_table(prefix: str, channels: int, attention: bool) -> SiteTable:
    entries = [(f"{prefix}.mid_block.attentions.0", "spatial_self", 1, channels)] if attention else []
    return SiteTable.build(entries)


class Encoder(nnx.Module):
    """conv_in -> down_blocks -> mid_block -> GroupNorm, SiLU -> conv_out (2 x latent channels)."""

    def __init__(self, config: AutoencoderKLConfig, *, dtype, rngs: nnx.Rngs):
        chans, groups = config.block_out_channels, config.norm_num_groups
        self.conv_in = _conv3x3(config.in_channels, chans[0], dtype=dtype, rngs=rngs)
        self.down_blocks = nnx.List(
            [
                DownEncoderBlock2D(
                    chans[max(i - 1, 0)],
                    chans[i],
                    layers=config.layers_per_block,
                    groups=groups,
                    downsample=i < len(chans) - 1,
                    dtype=dtype,
                    rngs=rngs,
                )
                for i in range(len(chans))
            ]
        )
        self.mid_block = UNetMidBlock2D(
            chans[-1], groups=groups, attention=config.mid_block_add_attention, dtype=dtype, rngs=rngs
        )
        self.conv_norm_out = group_norm(chans[-1], groups, _EPS, dtype=dtype, rngs=rngs)
        self.conv_out = _conv3x3(chans[-1], 2 * config.latent_channels, dtype=dtype, rngs=rngs)
        self.site_table = _site_table("encoder", chans[-1], config.mid_block_add_attention)

    def __call__(self, x: jax.Array, backend: str = "auto") -> jax.Array:
        """x [N, H, W, Cin] -> moments [N, H/d, W/d, 2·latent_channels]."""
        ctx = SiteContext(self.site_table, x.shape[0], backend=backend)
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x, ctx)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(x)))


class Decoder(nnx.Module):
    """conv_in -> mid_block -> up_blocks (layers_per_block + 1 resnets each) -> GroupNorm, SiLU -> conv_out."""

    def __init__(self, config: AutoencoderKLConfig, *, dtype, rngs: nnx.Rngs):
        chans, groups = tuple(reversed(config.block_out_channels)), config.norm_num_groups
        self.conv_in = _conv3x3(config.latent_channels, chans[0], dtype=dtype, rngs=rngs)
        self.mid_block = UNetMidBlock2D(
            chans[0], groups=groups, attention=config.mid_block_add_attention, dtype=dtype, rngs=rngs
        )
        self.up_blocks = nnx.List(
            [
                UpDecoderBlock2D(
                    chans[max(i - 1, 0)],
                    chans[i],
                    layers=config.layers_per_block + 1,
                    groups=groups,
                    upsample=i < len(chans) - 1,
                    dtype=dtype,
                    rngs=rngs,
                )
                for i in range(len(chans))
            ]
        )
        self.conv_norm_out = group_norm(chans[-1], groups, _EPS, dtype=dtype, rngs=rngs)
        self.conv_out = _conv3x3(chans[-1], config.out_channels, dtype=dtype, rngs=rngs)
        self.site_table = _site_table("decoder", chans[0], config.mid_block_add_attention)

    def __call__(self, z: jax.Array, backend: str = "auto") -> jax.Array:
        """z [N, h, w, latent_channels] -> [N, h·d, w·d, out_channels]."""
        ctx = SiteContext(self.site_table, z.shape[0], backend=backend)
        x = self.mid_block(self.conv_in(z), ctx)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(x)))


class AutoencoderKL(nnx.Module):
    """diffusers ``AutoencoderKL``: ``encoder`` + ``quant_conv``, ``post_quant_conv`` + ``decoder``."""

    def __init__(self, config: AutoencoderKLConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        latent = config.latent_channels
        self.encoder = Encoder(config, dtype=dtype, rngs=rngs)
        self.decoder = Decoder(config, dtype=dtype, rngs=rngs)
        self.quant_conv = _conv1x1(2 * latent, 2 * latent, dtype=dtype, rngs=rngs) if config.use_quant_conv else None
        self.post_quant_conv = (
            _conv1x1(latent, latent, dtype=dtype, rngs=rngs) if config.use_post_quant_conv else None
        )

    def encode(self, x: jax.Array, *, backend: str = "auto") -> LatentDistribution:
        """Images x [N, H, W, in_channels] (H, W multiples of the downscale) -> the latent Gaussian."""
        self._check(x, self.config.in_channels, "images")
        moments = self.encoder(x, backend)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        mean, logvar = jnp.split(moments, 2, axis=-1)  # [N, h, w, 2L] -> 2 x [N, h, w, L]
        return LatentDistribution(mean, jnp.clip(logvar, -30.0, 20.0))

    def decode(self, z: jax.Array, *, backend: str = "auto") -> jax.Array:
        """Latents z [N, h, w, latent_channels] -> images [N, h·d, w·d, out_channels]."""
        self._check(z, self.config.latent_channels, "latents")
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z, backend)

    def __call__(self, x: jax.Array, *, backend: str = "auto") -> jax.Array:
        """Reconstruction through the posterior mean: decode(encode(x).mean)."""
        return self.decode(self.encode(x, backend=backend).mean, backend=backend)

    def encode_frames(self, frames: jax.Array, *, chunk_size: int = 16, backend: str = "auto") -> LatentDistribution:
        """Frames [F, H, W, C] encoded ``chunk_size`` at a time (the SD VAE is per frame, so chunking
        bounds memory without changing results)."""
        mean, logvar = _chunked(lambda x: tuple(self.encode(x, backend=backend)), frames, chunk_size)
        return LatentDistribution(mean, logvar)

    def decode_frames(self, latents: jax.Array, *, chunk_size: int = 16, backend: str = "auto") -> jax.Array:
        """Latents [F, h, w, L] decoded ``chunk_size`` frames at a time -> [F, h·d, w·d, out_channels]."""
        (frames,) = _chunked(lambda z: (self.decode(z, backend=backend),), latents, chunk_size)
        return frames

    def _check(self, x: jax.Array, channels: int, what: str) -> None:
        if x.ndim != 4 or x.shape[-1] != channels:
            raise ValueError(f"{what} must be [N, H, W, {channels}] (channels-last), got shape {list(x.shape)}")


def _chunked(fn, x: jax.Array, chunk_size: int) -> tuple[jax.Array, ...]:
    """fn over x [F, ...] in chunks of ``chunk_size`` along F (one compiled chunk, ``lax.map``)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    frames = x.shape[0]
    chunk = min(chunk_size, frames)
    n = -(-frames // chunk)
    padded = jnp.pad(x, [(0, n * chunk - frames)] + [(0, 0)] * (x.ndim - 1))
    outs = jax.lax.map(fn, padded.reshape((n, chunk) + x.shape[1:]))  # each [n, chunk, ...]
    return tuple(o.reshape((n * chunk,) + o.shape[2:])[:frames] for o in outs)  # [F, ...]
