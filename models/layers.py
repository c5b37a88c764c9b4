"""Shared Flax NNX building blocks named like diffusers' modules, channels-last.

Every attribute path here mirrors the diffusers module path (``conv1``, ``time_emb_proj``, ``to_out.0``,
``ff.net.0.proj``, ...), so converters fill parameters by name: Linear weight (out, in) -> kernel (in, out),
Conv OIHW -> HWIO, norm weight -> scale. Activations are channels-last: images [N, H, W, C], token
sequences [N, L, C].

Numerics follow diffusers 0.42: GroupNorm/LayerNorm epsilons are passed explicitly (Flax defaults differ),
GEGLU uses the exact erf GELU, timestep embeddings are computed in float32 and cast to the model dtype.

Attention modules never compute attention themselves: they project q/k/v and call the model's
:class:`ieadapt_jax.SiteContext` at their site position, so rewiring and recording apply everywhere.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ..core.context import SiteContext


def _conv(in_channels: int, out_channels: int, kernel: int, *, stride: int = 1, padding, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    """A 2-D convolution on [N, H, W, C] with a (kernel, kernel, in, out) kernel."""
    return nnx.Conv(
        in_channels,
        out_channels,
        (kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        dtype=dtype,
        param_dtype=dtype,
        rngs=rngs,
    )


def _linear(in_features: int, out_features: int, *, bias: bool = True, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, use_bias=bias, dtype=dtype, param_dtype=dtype, rngs=rngs)


def group_norm(channels: int, groups: int, eps: float, *, dtype, rngs: nnx.Rngs) -> nnx.GroupNorm:
    """GroupNorm over all non-batch axes of a channels-last input (statistics per sample and group).

    On [N, H, W, C] this is diffusers' per-image GroupNorm; on [B, F, H, W, C] it normalises over all
    frames of a video, as the AnimateDiff motion modules do.
    """
    if channels % groups:
        raise ValueError(f"GroupNorm: {channels} channels are not divisible into {groups} groups")
    return nnx.GroupNorm(channels, num_groups=groups, epsilon=eps, dtype=dtype, param_dtype=dtype, rngs=rngs)


def layer_norm(features: int, eps: float = 1e-5, *, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm over the last axis with diffusers' default epsilon 1e-5 (Flax's default is 1e-6)."""
    return nnx.LayerNorm(features, epsilon=eps, dtype=dtype, param_dtype=dtype, rngs=rngs)


class ResnetBlock2D(nnx.Module):
    """diffusers ``ResnetBlock2D`` (time_embedding_norm="default", SiLU, pre-norm).

    ``temb_channels=None`` drops ``time_emb_proj`` (the VAE's blocks). A 1x1 ``conv_shortcut`` exists
    when the channel count changes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        temb_channels: int | None = None,
        groups: int = 32,
        groups_out: int | None = None,
        eps: float = 1e-6,
        output_scale_factor: float = 1.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        out_channels = in_channels if out_channels is None else out_channels
        self.output_scale_factor = float(output_scale_factor)
        self.norm1 = group_norm(in_channels, groups, eps, dtype=dtype, rngs=rngs)
        self.conv1 = _conv(in_channels, out_channels, 3, padding=((1, 1), (1, 1)), dtype=dtype, rngs=rngs)
        self.time_emb_proj = (
            None if temb_channels is None else _linear(temb_channels, out_channels, dtype=dtype, rngs=rngs)
        )
        self.norm2 = group_norm(out_channels, groups if groups_out is None else groups_out, eps, dtype=dtype, rngs=rngs)
        self.conv2 = _conv(out_channels, out_channels, 3, padding=((1, 1), (1, 1)), dtype=dtype, rngs=rngs)
        self.conv_shortcut = (
            _conv(in_channels, out_channels, 1, padding="VALID", dtype=dtype, rngs=rngs)
            if in_channels != out_channels
            else None
        )

    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        """x [N, H, W, Cin], temb [N, T] or None -> [N, H, W, Cout]."""
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            if temb is None:
                raise ValueError("this ResnetBlock2D has a time-embedding projection: pass temb [N, T]")
            h = h + self.time_emb_proj(jax.nn.silu(temb))[:, None, None, :]  # [N, 1, 1, Cout]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        out = shortcut + h
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return out


class Downsample2D(nnx.Module):
    """diffusers ``Downsample2D`` with a stride-2 3x3 ``conv``.

    padding=1: symmetric padding 1 (the UNet). padding=0: pad right/bottom by one, then no padding
    (the SD VAE), as diffusers does with ``F.pad(x, (0, 1, 0, 1))``.
    """

    def __init__(self, channels: int, out_channels: int | None = None, *, padding: int = 1, dtype=jnp.float32, rngs: nnx.Rngs):
        if padding not in (0, 1):
            raise ValueError(f"Downsample2D padding must be 1 (symmetric) or 0 (pad right/bottom), got {padding}")
        pads = ((1, 1), (1, 1)) if padding == 1 else ((0, 1), (0, 1))
        out_channels = channels if out_channels is None else out_channels
        self.conv = _conv(channels, out_channels, 3, stride=2, padding=pads, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [N, H, W, C] -> [N, ceil(H/2), ceil(W/2), Cout]."""
        return self.conv(x)


class Upsample2D(nnx.Module):
    """diffusers ``Upsample2D``: nearest-neighbour x2, then a 3x3 ``conv``."""

    def __init__(self, channels: int, out_channels: int | None = None, *, dtype=jnp.float32, rngs: nnx.Rngs):
        out_channels = channels if out_channels is None else out_channels
        self.conv = _conv(channels, out_channels, 3, padding=((1, 1), (1, 1)), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [N, H, W, C] -> [N, 2H, 2W, Cout]."""
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # [N, 2H, 2W, C]
        return self.conv(x)


class Attention(nnx.Module):
    """diffusers ``Attention`` (to_q / to_k / to_v / to_out.0) whose attention runs through a SiteContext.

    Args:
      query_dim: channels of the queries' input.
      heads, dim_head: inner width is heads * dim_head.
      site: this module's position in the model's site table; every call goes through ``ctx(site, ...)``.
      cross_attention_dim: channels of the context (keys/values input); None for self-attention.
      bias: bias of to_q/to_k/to_v. out_bias: bias of to_out.0.
      norm_num_groups: adds ``group_norm`` on the input (the VAE mid-block attention), eps ``norm_eps``.
      residual_connection: add the input back; rescale_output_factor: divide the result by it.
    """

    def __init__(
        self,
        query_dim: int,
        *,
        heads: int,
        dim_head: int,
        site: int,
        cross_attention_dim: int | None = None,
        bias: bool = False,
        out_bias: bool = True,
        norm_num_groups: int | None = None,
        norm_eps: float = 1e-5,
        residual_connection: bool = False,
        rescale_output_factor: float = 1.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        inner = heads * dim_head
        context_dim = query_dim if cross_attention_dim is None else cross_attention_dim
        self.heads = heads
        self.dim_head = dim_head
        self.site = int(site)
        self.residual_connection = residual_connection
        self.rescale_output_factor = float(rescale_output_factor)
        self.group_norm = (
            None if norm_num_groups is None else group_norm(query_dim, norm_num_groups, norm_eps, dtype=dtype, rngs=rngs)
        )
        self.to_q = _linear(query_dim, inner, bias=bias, dtype=dtype, rngs=rngs)
        self.to_k = _linear(context_dim, inner, bias=bias, dtype=dtype, rngs=rngs)
        self.to_v = _linear(context_dim, inner, bias=bias, dtype=dtype, rngs=rngs)
        self.to_out = nnx.List([_linear(inner, query_dim, bias=out_bias, dtype=dtype, rngs=rngs)])

    def __call__(
        self,
        x: jax.Array,
        ctx: SiteContext,
        context: jax.Array | None = None,
        *,
        context_repeat: int = 1,
    ) -> jax.Array:
        """Attention of x over itself or over ``context``.

        x: [N, L, C] tokens, or [N, H, W, C] (flattened to H*W tokens and restored; the VAE layout).
        context: [N // context_repeat, Lc, Cc] or None. ``context_repeat`` > 1 means each context entry
        serves that many consecutive entries of x (a video's text for each of its frames): keys and values
        are projected once and repeated, which equals projecting the repeated context.
        """
        image_shape = x.shape if x.ndim == 4 else None
        residual = x
        if image_shape is not None:
            n, h, w, c = image_shape
            x = x.reshape(n, h * w, c)  # [N, HW, C]
        if self.group_norm is not None:
            x = self.group_norm(x)
        source = x if context is None else context
        n, length, _ = x.shape
        q = self.to_q(x).reshape(n, length, self.heads, self.dim_head)  # [N, L, H, D]
        k = self.to_k(source)
        v = self.to_v(source)
        k = k.reshape(k.shape[0], k.shape[1], self.heads, self.dim_head)  # [Nc, Lc, H, D]
        v = v.reshape(v.shape[0], v.shape[1], self.heads, self.dim_head)  # [Nc, Lc, H, D]
        if context_repeat > 1:
            k = jnp.repeat(k, context_repeat, axis=0)  # [N, Lc, H, D]
            v = jnp.repeat(v, context_repeat, axis=0)  # [N, Lc, H, D]
        if k.shape[0] != n:
            raise ValueError(
                f"attention site {self.site}: {n} query entries but {k.shape[0]} context entries "
                f"(after repeating each {context_repeat}x)"
            )
        out = ctx(self.site, q, k, v)  # [N, L, H, D]
        out = self.to_out[0](out.reshape(n, length, self.heads * self.dim_head))  # [N, L, C]
        if image_shape is not None:
            out = out.reshape(image_shape)  # [N, H, W, C]
        if self.residual_connection:
            out = out + residual
        if self.rescale_output_factor != 1.0:
            out = out / self.rescale_output_factor
        return out


class GEGLU(nnx.Module):
    """diffusers ``GEGLU``: ``proj`` to 2x width, split [hidden, gate], hidden * gelu(gate) with exact erf GELU."""

    def __init__(self, dim_in: int, dim_out: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.proj = _linear(dim_in, 2 * dim_out, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden, gate = jnp.split(self.proj(x), 2, axis=-1)  # [..., dim_out] each
        return hidden * jax.nn.gelu(gate, approximate=False)


class FeedForward(nnx.Module):
    """diffusers ``FeedForward`` with GEGLU: ``net.0`` (GEGLU), ``net.1`` (dropout, inactive), ``net.2`` (Linear)."""

    def __init__(self, dim: int, *, mult: int = 4, dim_out: int | None = None, dtype=jnp.float32, rngs: nnx.Rngs):
        inner = dim * mult
        dim_out = dim if dim_out is None else dim_out
        self.net = nnx.List(
            [
                GEGLU(dim, inner, dtype=dtype, rngs=rngs),
                nnx.Dropout(0.0, deterministic=True),
                _linear(inner, dim_out, dtype=dtype, rngs=rngs),
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net[2](self.net[0](x))


def timestep_embedding(
    timesteps: jax.Array,
    dim: int,
    *,
    flip_sin_to_cos: bool = True,
    freq_shift: float = 0.0,
    max_period: float = 10000.0,
) -> jax.Array:
    """diffusers ``get_timestep_embedding``: [N] (possibly fractional) timesteps -> [N, dim] float32.

    Frequencies exp(-log(max_period) * i / (dim/2 - freq_shift)); [sin, cos], or [cos, sin] when flipped;
    an odd ``dim`` is zero-padded by one column.
    """
    timesteps = jnp.asarray(timesteps)
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must be [N], got shape {list(timesteps.shape)}")
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
    angles = timesteps.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]  # [N, half]
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)  # [N, 2*half]
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimestepEmbedding(nnx.Module):
    """diffusers ``TimestepEmbedding``: ``linear_1`` -> SiLU -> ``linear_2``."""

    def __init__(self, in_channels: int, time_embed_dim: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.linear_1 = _linear(in_channels, time_embed_dim, dtype=dtype, rngs=rngs)
        self.linear_2 = _linear(time_embed_dim, time_embed_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear_2(jax.nn.silu(self.linear_1(x)))


def sinusoidal_positions(length: int, dim: int) -> jax.Array:
    """diffusers ``SinusoidalPositionalEmbedding.pe[0, :length]``: [length, dim] float32.

    Even channels sin(p * w_i), odd channels cos(p * w_i), w_i = exp(-2i * log(10000) / dim). The values
    do not depend on the buffer's max length, so the buffer is recomputed rather than loaded.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even channel count, got {dim}")
    position = jnp.arange(length, dtype=jnp.float32)[:, None]  # [L, 1]
    freqs = jnp.exp(jnp.arange(0, dim, 2, dtype=jnp.float32) * (-math.log(10000.0) / dim))  # [dim/2]
    angles = position * freqs[None, :]  # [L, dim/2]
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(length, dim)  # interleave [sin, cos]
