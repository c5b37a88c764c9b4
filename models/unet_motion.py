"""diffusers ``UNetMotionModel`` (SD1.5 UNet2DConditionModel + AnimateDiff MotionAdapter) in Flax NNX.

Parameter paths equal diffusers' module paths (``down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q``,
``up_blocks.3.motion_modules.2.proj_out``, ...), so a diffusers state dict fills the model by name
(``convert.animatediff``). Activations are channels-last.

Layouts. The API takes ``sample`` [B, F, H, W, C] and runs as [B·F, H, W, C] with frames batch-minor
(entry b·F + f, as diffusers). Spatial attention batches are [B·F, H·W, C]; motion modules normalise
over all frames of a video and attend over [B·H·W, F, C]. Both keep the video (the rewiring row)
outermost, so a row's rewiring applies to all of its frames / pixels. Text states are given once per
video ([B, L, D]); cross-attention projects them once and repeats keys/values over frames, which is
numerically what diffusers does with its per-frame repeated text.

Every attention call goes through :class:`ieadapt_jax.SiteContext`; ``model.site_table`` lists them
in forward order, named by module path, with kinds spatial_self / cross / temporal. The configuration and
its reading from config.json files are :mod:`.unet_motion_config`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ..core import Record, Rewiring, SiteContext, SiteTable
from .layers import (
    Attention,
    Downsample2D,
    FeedForward,
    ResnetBlock2D,
    TimestepEmbedding,
    Upsample2D,
    group_norm,
    layer_norm,
    sinusoidal_positions,
    timestep_embedding,
)
from .unet_motion_config import CROSS_DOWN, CROSS_UP, UNetMotionConfig

# Transformer2D and motion-module GroupNorms use eps 1e-6 regardless of the UNet's norm_eps.
TRANSFORMER_NORM_EPS = 1e-6


class _SiteCollector:
    """Hands out site positions in construction order (= forward order) and records the table entries."""

    def __init__(self):
        self.entries: list[tuple[str, str, int, int]] = []

    def add(self, name: str, kind: str, heads: int, head_dim: int) -> int:
        self.entries.append((name, kind, heads, head_dim))
        return len(self.entries) - 1


class BasicTransformerBlock(nnx.Module):
    """diffusers ``BasicTransformerBlock`` (layer_norm, GEGLU feed-forward).

    spatial: attn1 self-attention over pixels, attn2 cross-attention to text.
    temporal (motion module): attn1 and attn2 are both self-attention over frames, and sinusoidal
    frame positions are added to the normed states before each of them.
    """

    def __init__(self, dim: int, heads: int, *, temporal: bool, cross_attention_dim: int | None,
                 name: str, sites: _SiteCollector, dtype, rngs: nnx.Rngs):
        head_dim = dim // heads
        self.temporal = temporal
        kind1, kind2 = ("temporal", "temporal") if temporal else ("spatial_self", "cross")
        self.norm1 = layer_norm(dim, dtype=dtype, rngs=rngs)
        self.attn1 = Attention(dim, heads=heads, dim_head=head_dim, dtype=dtype, rngs=rngs,
                               site=sites.add(f"{name}.attn1", kind1, heads, head_dim))
        self.norm2 = layer_norm(dim, dtype=dtype, rngs=rngs)
        self.attn2 = Attention(dim, heads=heads, dim_head=head_dim, dtype=dtype, rngs=rngs,
                               cross_attention_dim=None if temporal else cross_attention_dim,
                               site=sites.add(f"{name}.attn2", kind2, heads, head_dim))
        self.norm3 = layer_norm(dim, dtype=dtype, rngs=rngs)
        self.ff = FeedForward(dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, ctx: SiteContext, context: jax.Array | None = None, context_repeat: int = 1) -> jax.Array:
        """x [N, L, C]; context [N / context_repeat, Lc, Cc] for the spatial cross-attention."""
        positions = sinusoidal_positions(x.shape[1], x.shape[2]).astype(x.dtype) if self.temporal else 0.0  # [L, C]
        x = x + self.attn1(self.norm1(x) + positions, ctx)
        if self.temporal:
            x = x + self.attn2(self.norm2(x) + positions, ctx)
        else:
            x = x + self.attn2(self.norm2(x), ctx, context, context_repeat=context_repeat)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nnx.Module):
    """diffusers ``Transformer2DModel`` (continuous input): GroupNorm, proj_in, blocks, proj_out, residual.

    proj_in / proj_out are 1x1 convs, or Linear layers with ``use_linear_projection``.
    """

    def __init__(self, channels: int, heads: int, *, num_layers: int, cross_attention_dim: int, groups: int,
                 use_linear_projection: bool, name: str, sites: _SiteCollector, dtype, rngs: nnx.Rngs):
        self.use_linear_projection = use_linear_projection
        self.norm = group_norm(channels, groups, TRANSFORMER_NORM_EPS, dtype=dtype, rngs=rngs)
        self.proj_in = _projection(channels, use_linear_projection, dtype, rngs)
        self.transformer_blocks = nnx.List([
            BasicTransformerBlock(channels, heads, temporal=False, cross_attention_dim=cross_attention_dim,
                                  name=f"{name}.transformer_blocks.{i}", sites=sites, dtype=dtype, rngs=rngs)
            for i in range(num_layers)
        ])
        self.proj_out = _projection(channels, use_linear_projection, dtype, rngs)

    def __call__(self, x: jax.Array, ctx: SiteContext, context: jax.Array, context_repeat: int) -> jax.Array:
        """x [N, H, W, C] (N = videos·frames), context [N / context_repeat, L, D] -> [N, H, W, C]."""
        n, h, w, c = x.shape
        tokens = self.proj_in(self.norm(x)).reshape(n, h * w, c)  # [N, HW, C]
        for block in self.transformer_blocks:
            tokens = block(tokens, ctx, context, context_repeat)
        out = self.proj_out(tokens.reshape(n, h, w, c))  # [N, H, W, C]
        return out + x


def _projection(channels: int, linear: bool, dtype, rngs: nnx.Rngs) -> nnx.Module:
    """A channel projection on [N, H, W, C]: Linear, or a 1x1 conv (equal maps, different weight shapes)."""
    if linear:
        return nnx.Linear(channels, channels, dtype=dtype, param_dtype=dtype, rngs=rngs)
    return nnx.Conv(channels, channels, (1, 1), padding="VALID", dtype=dtype, param_dtype=dtype, rngs=rngs)


class AnimateDiffTransformer3D(nnx.Module):
    """diffusers ``AnimateDiffTransformer3D``: a motion module attending over the frames of each pixel.

    GroupNorm runs per video over all its frames; attention runs on [B·H·W, F, C].
    """

    def __init__(self, channels: int, heads: int, *, num_layers: int, groups: int, max_seq_length: int,
                 name: str, sites: _SiteCollector, dtype, rngs: nnx.Rngs):
        self.max_seq_length = max_seq_length
        self.norm = group_norm(channels, groups, TRANSFORMER_NORM_EPS, dtype=dtype, rngs=rngs)
        self.proj_in = nnx.Linear(channels, channels, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.transformer_blocks = nnx.List([
            BasicTransformerBlock(channels, heads, temporal=True, cross_attention_dim=None,
                                  name=f"{name}.transformer_blocks.{i}", sites=sites, dtype=dtype, rngs=rngs)
            for i in range(num_layers)
        ])
        self.proj_out = nnx.Linear(channels, channels, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, ctx: SiteContext, num_frames: int) -> jax.Array:
        """x [B·F, H, W, C] (frames batch-minor) -> [B·F, H, W, C]."""
        bf, h, w, c = x.shape
        b = bf // num_frames
        if num_frames > self.max_seq_length:
            raise ValueError(f"{num_frames} frames exceed the motion module's max sequence length {self.max_seq_length}")
        video = self.norm(x.reshape(b, num_frames, h, w, c))  # [B, F, H, W, C], stats over F, H, W per group
        tokens = video.transpose(0, 2, 3, 1, 4).reshape(b * h * w, num_frames, c)  # [B·H·W, F, C]
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, ctx)
        tokens = self.proj_out(tokens)
        out = tokens.reshape(b, h, w, num_frames, c).transpose(0, 3, 1, 2, 4).reshape(bf, h, w, c)  # [B·F, H, W, C]
        return out + x


def _spatial_transformer(channels, heads, layers: int, cfg: UNetMotionConfig, name, sites, dtype, rngs) -> Transformer2DModel:
    """One spatial transformer at ``name`` (its layer count from ``layers``), cross-attending to the text."""
    return Transformer2DModel(channels, heads, num_layers=layers, cross_attention_dim=cfg.cross_attention_dim,
                              groups=cfg.norm_num_groups, use_linear_projection=cfg.use_linear_projection,
                              name=name, sites=sites, dtype=dtype, rngs=rngs)


def _motion_module(channels, heads, layers: int, cfg: UNetMotionConfig, name, sites, dtype, rngs) -> AnimateDiffTransformer3D:
    """One motion module at ``name`` (its layer count from ``layers``)."""
    return AnimateDiffTransformer3D(channels, heads, num_layers=layers, groups=cfg.norm_num_groups,
                                    max_seq_length=cfg.motion_max_seq_length, name=name, sites=sites,
                                    dtype=dtype, rngs=rngs)


class DownBlockMotion(nnx.Module):
    """diffusers ``CrossAttnDownBlockMotion`` (with ``attentions``) or ``DownBlockMotion`` (without).

    Per layer: resnet -> spatial transformer (cross blocks) -> motion module; then the downsampler.
    """

    def __init__(self, index: int, in_channels: int, cfg: UNetMotionConfig, sites: _SiteCollector, dtype, rngs: nnx.Rngs):
        out_channels = cfg.block_out_channels[index]
        cross = cfg.down_block_types[index] == CROSS_DOWN
        name = f"down_blocks.{index}"
        resnets, attentions, motion = [], [], []
        for j in range(cfg.layers_per_block[index]):
            resnets.append(ResnetBlock2D(in_channels if j == 0 else out_channels, out_channels,
                                         temb_channels=cfg.time_embed_dim, groups=cfg.norm_num_groups,
                                         eps=cfg.norm_eps, dtype=dtype, rngs=rngs))
            if cross:
                attentions.append(_spatial_transformer(out_channels, cfg.num_attention_heads[index],
                                                       cfg.transformer_layers_per_block[index], cfg,
                                                       f"{name}.attentions.{j}", sites, dtype, rngs))
            motion.append(_motion_module(out_channels, cfg.motion_num_attention_heads[index],
                                          cfg.temporal_transformer_layers_per_block[index], cfg,
                                          f"{name}.motion_modules.{j}", sites, dtype, rngs))
        self.resnets = nnx.List(resnets)
        self.attentions = nnx.List(attentions) if cross else None
        self.motion_modules = nnx.List(motion)
        last = index == len(cfg.block_out_channels) - 1
        self.downsamplers = None if last else nnx.List([
            Downsample2D(out_channels, padding=cfg.downsample_padding, dtype=dtype, rngs=rngs)
        ])

    def __call__(self, x, temb, ctx: SiteContext, text, num_frames: int) -> tuple[jax.Array, list[jax.Array]]:
        """x [B·F, H, W, Cin] -> (x [B·F, H', W', Cout], skip connections)."""
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[j](x, ctx, text, num_frames)
            x = self.motion_modules[j](x, ctx, num_frames)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidBlockCrossAttnMotion(nnx.Module):
    """diffusers ``UNetMidBlockCrossAttnMotion`` (with motion modules) or ``UNetMidBlock2DCrossAttn`` (without).

    resnets[0], then per layer: spatial transformer -> motion module (if any) -> resnet.
    """

    def __init__(self, cfg: UNetMotionConfig, sites: _SiteCollector, dtype, rngs: nnx.Rngs):
        channels = cfg.block_out_channels[-1]

        def resnet() -> ResnetBlock2D:
            return ResnetBlock2D(channels, channels, temb_channels=cfg.time_embed_dim, groups=cfg.norm_num_groups,
                                 eps=cfg.norm_eps, output_scale_factor=cfg.mid_block_scale_factor,
                                 dtype=dtype, rngs=rngs)

        resnets, attentions, motion = [resnet()], [], []
        for j in range(cfg.mid_block_layers):
            attentions.append(_spatial_transformer(channels, cfg.num_attention_heads[-1],
                                                   cfg.transformer_layers_per_mid_block, cfg,
                                                   f"mid_block.attentions.{j}", sites, dtype, rngs))
            if cfg.use_motion_mid_block:
                motion.append(_motion_module(channels, cfg.motion_num_attention_heads[-1],
                                              cfg.temporal_transformer_layers_per_mid_block[j], cfg,
                                              f"mid_block.motion_modules.{j}", sites, dtype, rngs))
            resnets.append(resnet())
        self.resnets = nnx.List(resnets)
        self.attentions = nnx.List(attentions)
        self.motion_modules = nnx.List(motion) if cfg.use_motion_mid_block else None

    def __call__(self, x, temb, ctx: SiteContext, text, num_frames: int) -> jax.Array:
        x = self.resnets[0](x, temb)
        for j, attention in enumerate(self.attentions):
            x = attention(x, ctx, text, num_frames)
            if self.motion_modules is not None:
                x = self.motion_modules[j](x, ctx, num_frames)
            x = self.resnets[j + 1](x, temb)
        return x


class UpBlockMotion(nnx.Module):
    """diffusers ``CrossAttnUpBlockMotion`` (with ``attentions``) or ``UpBlockMotion`` (without).

    Per layer: concat skip -> resnet -> spatial transformer (cross blocks) -> motion module; then the upsampler.
    """

    def __init__(self, index: int, prev_channels: int, cfg: UNetMotionConfig, sites: _SiteCollector, dtype, rngs: nnx.Rngs):
        n = len(cfg.block_out_channels)
        reversed_channels = cfg.block_out_channels[::-1]
        out_channels = reversed_channels[index]
        skip_channels = reversed_channels[min(index + 1, n - 1)]
        cross = cfg.up_block_types[index] == CROSS_UP
        heads = cfg.num_attention_heads[::-1][index]
        layers = cfg.layers_per_block[::-1][index] + 1
        name = f"up_blocks.{index}"
        resnets, attentions, motion = [], [], []
        for j in range(layers):
            res_channels = skip_channels if j == layers - 1 else out_channels
            in_channels = prev_channels if j == 0 else out_channels
            resnets.append(ResnetBlock2D(in_channels + res_channels, out_channels, temb_channels=cfg.time_embed_dim,
                                         groups=cfg.norm_num_groups, eps=cfg.norm_eps, dtype=dtype, rngs=rngs))
            if cross:
                attentions.append(_spatial_transformer(out_channels, heads,
                                                       cfg.reverse_transformer_layers_per_block[index], cfg,
                                                       f"{name}.attentions.{j}", sites, dtype, rngs))
            motion.append(_motion_module(out_channels, cfg.reverse_motion_num_attention_heads[index],
                                          cfg.reverse_temporal_transformer_layers_per_block[index], cfg,
                                          f"{name}.motion_modules.{j}", sites, dtype, rngs))
        self.resnets = nnx.List(resnets)
        self.attentions = nnx.List(attentions) if cross else None
        self.motion_modules = nnx.List(motion)
        self.upsamplers = None if index == n - 1 else nnx.List([Upsample2D(out_channels, dtype=dtype, rngs=rngs)])

    def __call__(self, x, skips: list[jax.Array], temb, ctx: SiteContext, text, num_frames: int) -> jax.Array:
        """x [B·F, H, W, C]; skips: this block's skip connections, consumed last-first."""
        for j, resnet in enumerate(self.resnets):
            x = jnp.concatenate([x, skips[-1 - j]], axis=-1)  # [B·F, H, W, C + Cskip]
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[j](x, ctx, text, num_frames)
            x = self.motion_modules[j](x, ctx, num_frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNetMotionModel(nnx.Module):
    """AnimateDiff's motion UNet; see the module docstring for layouts.

    Build with random weights from a :class:`~.unet_motion_config.UNetMotionConfig`, or load a checkpoint with
    ``convert.animatediff.load_unet_motion``. ``site_table`` lists every
    attention call in forward order.
    """

    def __init__(self, config: UNetMotionConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.dtype = jnp.dtype(dtype)
        sites = _SiteCollector()
        c0 = config.block_out_channels[0]
        self.conv_in = nnx.Conv(config.in_channels, c0, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype,
                                param_dtype=dtype, rngs=rngs)
        self.time_embedding = TimestepEmbedding(c0, config.time_embed_dim, dtype=dtype, rngs=rngs)
        down = []
        in_channels = c0
        for i in range(len(config.block_out_channels)):
            down.append(DownBlockMotion(i, in_channels, config, sites, dtype, rngs))
            in_channels = config.block_out_channels[i]
        self.down_blocks = nnx.List(down)
        self.mid_block = MidBlockCrossAttnMotion(config, sites, dtype, rngs)
        up = []
        prev = config.block_out_channels[-1]
        for i in range(len(config.block_out_channels)):
            up.append(UpBlockMotion(i, prev, config, sites, dtype, rngs))
            prev = config.block_out_channels[::-1][i]
        self.up_blocks = nnx.List(up)
        self.conv_norm_out = group_norm(c0, config.norm_num_groups, config.norm_eps, dtype=dtype, rngs=rngs)
        self.conv_out = nnx.Conv(c0, config.out_channels, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype,
                                 param_dtype=dtype, rngs=rngs)
        self.site_table = SiteTable.build(sites.entries)

    @classmethod
    def abstract(cls, config: UNetMotionConfig, *, dtype=jnp.float32) -> "UNetMotionModel":
        """The model with abstract parameters (shapes and dtypes, no memory, no random init), to load into."""

        def build() -> UNetMotionModel:
            # A ref-backed RNG counter: a plain one makes tracing the constructor quadratic in the layer count.
            with nnx.var_defaults(ref=True):
                rngs = nnx.Rngs(0)
            return cls(config, dtype=dtype, rngs=rngs)

        return nnx.eval_shape(build)

    @property
    def downsampling_factor(self) -> int:
        """The spatial size must be a multiple of this (2 ** number of upsamplers)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def __call__(
        self,
        sample: jax.Array,
        timesteps: jax.Array,
        encoder_hidden_states: jax.Array,
        rewiring: Rewiring | None = None,
        record=False,
        backend: str = "auto",
        active=None,
    ) -> tuple[jax.Array, Record | None]:
        """Predict noise for a batch of videos.

        Args:
          sample: [B, F, H, W, C] latents (C = in_channels).
          timesteps: [B] or a scalar (int or float).
          encoder_hidden_states: [B, L, D] text states, once per video.
          rewiring: a :class:`ieadapt_jax.Rewiring` of shape [sites, B] (rows = videos), or None.
          record: what records entropy/energy: False, True (all sites), a kind ("self", "temporal", ...),
            a site name, or a list of names / positions (see ``SiteTable.recording``).
          backend: attention backend ("auto", "reference", "chunked", "cudnn").
          active: None (every site takes its rewiring slice), or the sites (names / positions) that do; the
            others run plain attention with no row gathers (static; see :class:`ieadapt_jax.SiteContext`).

        Returns:
          (noise prediction [B, F, H, W, out_channels] in the model dtype, Record of [recorded sites, B]
          arrays in forward order, or None when nothing records).
        """
        b, f, h, w = self._check_inputs(sample, encoder_hidden_states)
        timesteps = jnp.asarray(timesteps)
        if timesteps.ndim > 1 or (timesteps.ndim == 1 and timesteps.shape[0] not in (1, b)):
            raise ValueError(f"timesteps must be a scalar or [B] = [{b}], got shape {list(timesteps.shape)}")
        timesteps = jnp.broadcast_to(timesteps.reshape(-1), (b,))
        ctx = SiteContext(self.site_table, rows=b, rewiring=rewiring, record=record, backend=backend, active=active)

        c0 = self.config.block_out_channels[0]
        temb = self.time_embedding(timestep_embedding(timesteps, c0).astype(self.dtype))  # [B, T]
        temb = jnp.repeat(temb, f, axis=0)  # [B·F, T]
        text = encoder_hidden_states.astype(self.dtype)  # [B, L, D]
        x = sample.astype(self.dtype).reshape(b * f, h, w, sample.shape[-1])  # [B·F, H, W, C], frames batch-minor

        x = self.conv_in(x)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, ctx, text, f)
            skips.extend(block_skips)
        x = self.mid_block(x, temb, ctx, text, f)
        for block in self.up_blocks:
            count = len(block.resnets)
            x = block(x, skips[-count:], temb, ctx, text, f)
            skips = skips[:-count]
        x = self.conv_out(jax.nn.silu(self.conv_norm_out(x)))  # [B·F, H, W, out]
        return x.reshape(b, f, h, w, x.shape[-1]), ctx.records()

    def _check_inputs(self, sample, encoder_hidden_states) -> tuple[int, int, int, int]:
        if getattr(sample, "ndim", None) != 5:
            raise ValueError(f"sample must be [B, F, H, W, C] (channels-last video latents), got shape {list(getattr(sample, 'shape', ()))}")
        b, f, h, w, c = sample.shape
        if c != self.config.in_channels:
            raise ValueError(
                f"sample has {c} channels in its last axis, the model takes {self.config.in_channels}; "
                "the layout is [B, F, H, W, C] (diffusers uses [B, C, F, H, W]: transpose(0, 2, 3, 4, 1))"
            )
        factor = self.downsampling_factor
        if h % factor or w % factor:
            raise ValueError(f"latent height and width must be multiples of {factor}, got {h}x{w}")
        if f > self.config.motion_max_seq_length:
            raise ValueError(f"{f} frames exceed the motion modules' maximum of {self.config.motion_max_seq_length}")
        if getattr(encoder_hidden_states, "ndim", None) != 3:
            raise ValueError(
                f"encoder_hidden_states must be [B, L, D] (once per video), got shape {list(getattr(encoder_hidden_states, 'shape', ()))}"
            )
        if encoder_hidden_states.shape[0] != b:
            raise ValueError(
                f"encoder_hidden_states has batch {encoder_hidden_states.shape[0]}, sample has {b} videos; "
                "pass the text states once per video (not repeated per frame)"
            )
        if encoder_hidden_states.shape[-1] != self.config.cross_attention_dim:
            raise ValueError(
                f"encoder_hidden_states has width {encoder_hidden_states.shape[-1]}, the model's cross_attention_dim is "
                f"{self.config.cross_attention_dim}"
            )
        return b, f, h, w
