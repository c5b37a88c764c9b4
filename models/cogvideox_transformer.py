"""diffusers ``CogVideoXTransformer3DModel`` (CogVideoX-2B / -5B) in Flax NNX, channels-last.

Parameter paths equal diffusers' module paths (``patch_embed.proj``, ``patch_embed.text_proj``,
``time_embedding.linear_{1,2}``, ``transformer_blocks.{i}.norm1.{linear,norm}``,
``transformer_blocks.{i}.attn1.{to_q,to_k,to_v,norm_q,norm_k,to_out.0}``, ``transformer_blocks.{i}.ff.net.{0.proj,2}``,
``norm_final``, ``norm_out.{linear,norm}``, ``proj_out``), so a diffusers state dict fills the model by name
(``convert.cogvideox``).

Layouts. The API takes ``sample`` [B, F, H, W, C] (latent frames, channels-last; diffusers takes
[B, F, C, H, W]) and text states [B, L, D]. Patches of p×p pixels become video tokens ordered (frame,
row, column); text and video tokens form one joint sequence [text; video] of N = L + F·(H/p)·(W/p)
tokens. Each block applies one LayerNorm to both parts with separate adaptive shift/scale/gate (from the
timestep), one joint self-attention over all N tokens, and one feed-forward over all N tokens.

Attention sites: ``transformer_blocks.{i}.attn1``, kind ``joint``, one per block, rows = videos. q and k
get a per-head LayerNorm and then, on video tokens only, the 3D rotary embedding (interleaved pairs;
head dims split t:h:w = 1/4 : 3/8 : 3/8; positions from diffusers' resize-crop grid); the attention
itself goes through :class:`ieadapt_jax.SiteContext`, so every rewiring mode and record applies over
the whole (text + video) map. 2B instead adds 3D sin-cos position embeddings to the video tokens.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..core import ConfigError, Record, Rewiring, SiteContext, SiteTable
from .layers import TimestepEmbedding, timestep_embedding

# attn1's per-head q/k LayerNorm uses eps 1e-6 whatever the model's norm_eps (diffusers' CogVideoXBlock).
QK_NORM_EPS = 1e-6
ROPE_THETA = 10000.0
_ACTIVATIONS = {
    "gelu-approximate": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
}


@dataclasses.dataclass(frozen=True)
class CogVideoXTransformerConfig:
    """The fields of a diffusers ``CogVideoXTransformer3DModel`` config.json (defaults are diffusers')."""

    num_attention_heads: int = 30
    attention_head_dim: int = 64
    in_channels: int = 16
    out_channels: int = 16
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    time_embed_dim: int = 512
    text_embed_dim: int = 4096
    num_layers: int = 30
    attention_bias: bool = True
    sample_width: int = 90
    sample_height: int = 60
    sample_frames: int = 49
    patch_size: int = 2
    temporal_compression_ratio: int = 4
    max_text_seq_length: int = 226
    activation_fn: str = "gelu-approximate"
    timestep_activation_fn: str = "silu"
    norm_elementwise_affine: bool = True
    norm_eps: float = 1e-5
    spatial_interpolation_scale: float = 1.875
    temporal_interpolation_scale: float = 1.0
    use_rotary_positional_embeddings: bool = False
    patch_bias: bool = True

    def __post_init__(self):
        if self.activation_fn not in _ACTIVATIONS:
            raise ConfigError(f"activation_fn={self.activation_fn!r} is not supported; choose one of {', '.join(_ACTIVATIONS)}")
        if self.timestep_activation_fn != "silu":
            raise ConfigError(f"timestep_activation_fn={self.timestep_activation_fn!r} is not supported (only 'silu')")
        if self.use_rotary_positional_embeddings and self.attention_head_dim % 16:
            raise ConfigError(
                f"rotary embeddings split the head dim t:h:w = 1/4 : 3/8 : 3/8 in even parts: attention_head_dim "
                f"must be a multiple of 16, got {self.attention_head_dim}"
            )
        if not self.use_rotary_positional_embeddings and self.inner_dim % 16:
            raise ConfigError(f"3D sin-cos position embeddings need inner_dim divisible by 16, got {self.inner_dim}")

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "CogVideoXTransformerConfig":
        """From a config.json dict; options of CogVideoX 1.5 and of the image-to-video model are refused."""
        for key in ("patch_size_t", "ofs_embed_dim"):
            if config.get(key) is not None:
                raise ConfigError(
                    f"CogVideoXTransformer3DModel config {key}={config[key]!r} (CogVideoX 1.5 / image-to-video) is not "
                    "supported; this port covers CogVideoX-2B and -5B text-to-video"
                )
        if config.get("use_learned_positional_embeddings"):
            raise ConfigError("use_learned_positional_embeddings=True (CogVideoX-5B image-to-video) is not supported")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in config.items() if k in names}
        if kwargs.get("out_channels") is None:
            kwargs["out_channels"] = int(config.get("in_channels", cls.in_channels))
        return cls(**kwargs)


def _linear(cin: int, cout: int, *, bias: bool = True, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(cin, cout, use_bias=bias, dtype=dtype, param_dtype=dtype, rngs=rngs)


def _layer_norm(features: int, eps: float, affine: bool, *, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(features, epsilon=eps, use_scale=affine, use_bias=affine, dtype=dtype, param_dtype=dtype, rngs=rngs)


# ------------------------------------------------------------------------------------- position tables


def resize_crop_region(grid: tuple[int, int], base_width: int, base_height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """diffusers' ``get_resize_crop_region_for_grid``: the grid fitted (aspect kept) and centred in the base grid."""
    h, w = grid
    if h / w > base_height / base_width:
        height, width = base_height, int(round(base_height / h * w))
    else:
        width, height = base_width, int(round(base_width / w * h))
    top, left = int(round((base_height - height) / 2.0)), int(round((base_width - width) / 2.0))
    return (top, left), (top + height, left + width)


def _rope_1d(dim: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [len(positions), dim] float32, each frequency repeated for its interleaved pair."""
    freqs = np.float32(1.0) / np.float32(ROPE_THETA) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))  # [dim/2]
    angles = np.outer(positions.astype(np.float32), freqs)  # [len, dim/2]
    return np.repeat(np.cos(angles), 2, axis=1), np.repeat(np.sin(angles), 2, axis=1)


def rotary_tables(config: CogVideoXTransformerConfig, frames: int, grid_h: int, grid_w: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [frames·grid_h·grid_w, head_dim] float32 of diffusers' ``get_3d_rotary_pos_embed``.

    As the CogVideoX pipeline computes them: the token grid is placed in the config's base grid
    (sample_height/p × sample_width/p) by :func:`resize_crop_region`, positions are ``linspace`` over the
    crop, and the head dims are split t:h:w = d/4 : 3d/8 : 3d/8. Tokens are ordered (frame, row, column).
    """
    p = config.patch_size
    (top, left), (bottom, right) = resize_crop_region((grid_h, grid_w), config.sample_width // p, config.sample_height // p)
    pos_h = np.linspace(top, bottom * (grid_h - 1) / grid_h, grid_h, dtype=np.float32)
    pos_w = np.linspace(left, right * (grid_w - 1) / grid_w, grid_w, dtype=np.float32)
    pos_t = np.linspace(0, frames * (frames - 1) / frames, frames, dtype=np.float32)
    d = config.attention_head_dim
    parts = [_rope_1d(d // 4, pos_t), _rope_1d(d // 8 * 3, pos_h), _rope_1d(d // 8 * 3, pos_w)]
    shape = (frames, grid_h, grid_w)

    def combine(tables):  # [T, dt], [H, dh], [W, dw] -> [T·H·W, dt + dh + dw]
        t, h, w = tables
        full = [np.broadcast_to(t[:, None, None], shape + t.shape[-1:]),
                np.broadcast_to(h[None, :, None], shape + h.shape[-1:]),
                np.broadcast_to(w[None, None, :], shape + w.shape[-1:])]
        return np.concatenate(full, axis=-1).reshape(frames * grid_h * grid_w, -1)

    return combine([c for c, _ in parts]), combine([s for _, s in parts])


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate interleaved pairs (x₀, x₁) of x [B, N, H, D] by the per-token angles: cos, sin [N, D]."""
    pairs = x.reshape(x.shape[:-1] + (-1, 2))  # [B, N, H, D/2, 2]
    rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)  # (-x₁, x₀) per pair
    out = x.astype(jnp.float32) * cos[None, :, None, :] + rotated.astype(jnp.float32) * sin[None, :, None, :]
    return out.astype(x.dtype)


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[len, dim] float64: [sin, cos] halves (diffusers' ``get_1d_sincos_pos_embed_from_grid``)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_position_embeddings(config: CogVideoXTransformerConfig, frames: int, grid_h: int, grid_w: int) -> np.ndarray:
    """[frames·grid_h·grid_w, inner_dim] float64 of diffusers' ``get_3d_sincos_pos_embed`` (CogVideoX-2B).

    Channels: the first quarter encodes the frame, the rest the spatial position (half column, half row).
    """
    dim = config.inner_dim
    spatial, temporal = 3 * dim // 4, dim // 4
    cols = np.arange(grid_w, dtype=np.float32) / config.spatial_interpolation_scale
    rows = np.arange(grid_h, dtype=np.float32) / config.spatial_interpolation_scale
    col_grid, row_grid = np.meshgrid(cols, rows, indexing="xy")  # each [H, W]
    emb_spatial = np.concatenate([_sincos_1d(spatial // 2, col_grid), _sincos_1d(spatial // 2, row_grid)], axis=1)  # [H·W, 3D/4]
    times = np.arange(frames, dtype=np.float32) / config.temporal_interpolation_scale
    emb_temporal = _sincos_1d(temporal, times)  # [F, D/4]
    out = np.concatenate([
        np.broadcast_to(emb_temporal[:, None], (frames, grid_h * grid_w, temporal)),
        np.broadcast_to(emb_spatial[None], (frames, grid_h * grid_w, spatial)),
    ], axis=-1)  # [F, H·W, D]
    return out.reshape(frames * grid_h * grid_w, dim)


# ---------------------------------------------------------------------------------------------- modules


class CogVideoXPatchEmbed(nnx.Module):
    """``proj``: a p×p stride-p conv over each latent frame; ``text_proj``: text states to the model width."""

    def __init__(self, config: CogVideoXTransformerConfig, *, dtype, rngs: nnx.Rngs):
        p = config.patch_size
        self.proj = nnx.Conv(config.in_channels, config.inner_dim, (p, p), strides=(p, p), padding="VALID",
                             use_bias=config.patch_bias, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.text_proj = _linear(config.text_embed_dim, config.inner_dim, dtype=dtype, rngs=rngs)

    def __call__(self, text: jax.Array, sample: jax.Array) -> tuple[jax.Array, jax.Array]:
        """text [B, L, Dt], sample [B, F, H, W, C] -> (text tokens [B, L, D], video tokens [B, F·(H/p)·(W/p), D])."""
        b, f, h, w, c = sample.shape
        patches = self.proj(sample.reshape(b * f, h, w, c))  # [B·F, H/p, W/p, D]
        video = patches.reshape(b, -1, patches.shape[-1])  # [B, F·(H/p)·(W/p), D], ordered (frame, row, column)
        return self.text_proj(text), video


class CogVideoXLayerNormZero(nnx.Module):
    """``linear`` (SiLU(temb) -> 6 chunks: shift, scale, gate, enc_shift, enc_scale, enc_gate) and one shared ``norm``."""

    def __init__(self, config: CogVideoXTransformerConfig, *, dtype, rngs: nnx.Rngs):
        dim = config.inner_dim
        self.linear = _linear(config.time_embed_dim, 6 * dim, dtype=dtype, rngs=rngs)
        self.norm = _layer_norm(dim, config.norm_eps, config.norm_elementwise_affine, dtype=dtype, rngs=rngs)

    def __call__(self, video, text, temb):
        """video [B, Nv, D], text [B, L, D], temb [B, T] -> (normed video, normed text, gate [B, 1, D], enc_gate [B, 1, D])."""
        shift, scale, gate, enc_shift, enc_scale, enc_gate = jnp.split(self.linear(jax.nn.silu(temb))[:, None, :], 6, axis=-1)
        video = self.norm(video) * (1 + scale) + shift
        text = self.norm(text) * (1 + enc_scale) + enc_shift
        return video, text, gate, enc_gate


class CogVideoXAttention(nnx.Module):
    """diffusers ``Attention`` with ``CogVideoXAttnProcessor2_0``: joint self-attention over [text; video].

    to_q/to_k/to_v (bias per config) -> per-head ``norm_q``/``norm_k`` LayerNorm -> rotary embedding on the
    video tokens of q and k -> the attention core at this module's site -> ``to_out.0``.
    """

    def __init__(self, config: CogVideoXTransformerConfig, site: int, *, dtype, rngs: nnx.Rngs):
        dim, head_dim = config.inner_dim, config.attention_head_dim
        self.heads = config.num_attention_heads
        self.head_dim = head_dim
        self.site = int(site)
        self.to_q = _linear(dim, dim, bias=config.attention_bias, dtype=dtype, rngs=rngs)
        self.to_k = _linear(dim, dim, bias=config.attention_bias, dtype=dtype, rngs=rngs)
        self.to_v = _linear(dim, dim, bias=config.attention_bias, dtype=dtype, rngs=rngs)
        self.norm_q = _layer_norm(head_dim, QK_NORM_EPS, True, dtype=dtype, rngs=rngs)
        self.norm_k = _layer_norm(head_dim, QK_NORM_EPS, True, dtype=dtype, rngs=rngs)
        self.to_out = nnx.List([_linear(dim, dim, dtype=dtype, rngs=rngs)])

    def __call__(self, video, text, ctx: SiteContext, rotary) -> tuple[jax.Array, jax.Array]:
        """video [B, Nv, D], text [B, L, D], rotary (cos, sin [Nv, head_dim]) or None -> (video, text) outputs."""
        b, length = text.shape[0], text.shape[1]
        x = jnp.concatenate([text, video], axis=1)  # [B, N, D], N = L + Nv
        heads = (b, x.shape[1], self.heads, self.head_dim)
        q = self.norm_q(self.to_q(x).reshape(heads))  # [B, N, H, Dh]
        k = self.norm_k(self.to_k(x).reshape(heads))
        v = self.to_v(x).reshape(heads)
        if rotary is not None:
            cos, sin = rotary
            q = q.at[:, length:].set(apply_rotary(q[:, length:], cos, sin))
            k = k.at[:, length:].set(apply_rotary(k[:, length:], cos, sin))
        out = ctx(self.site, q, k, v)  # [B, N, H, Dh]
        out = self.to_out[0](out.reshape(b, -1, self.heads * self.head_dim))  # [B, N, D]
        return out[:, length:], out[:, :length]


class _GELUProjection(nnx.Module):
    """diffusers ``GELU``: ``proj`` then GELU (tanh approximation for "gelu-approximate")."""

    def __init__(self, dim: int, inner: int, activation: str, *, dtype, rngs: nnx.Rngs):
        self.activation = _ACTIVATIONS[activation]
        self.proj = _linear(dim, inner, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.activation(self.proj(x))


class FeedForward(nnx.Module):
    """diffusers ``FeedForward`` with a GELU projection: ``net.0.proj``, GELU, ``net.2`` (``net.1``/``net.3``: dropout)."""

    def __init__(self, config: CogVideoXTransformerConfig, *, dtype, rngs: nnx.Rngs):
        dim, inner = config.inner_dim, 4 * config.inner_dim
        self.net = nnx.List([
            _GELUProjection(dim, inner, config.activation_fn, dtype=dtype, rngs=rngs),
            nnx.Dropout(0.0, deterministic=True),
            _linear(inner, dim, dtype=dtype, rngs=rngs),
            nnx.Dropout(0.0, deterministic=True),
        ])

    def __call__(self, x):
        return self.net[2](self.net[0](x))


class CogVideoXBlock(nnx.Module):
    """norm1 -> joint attention (gated residuals) -> norm2 -> feed-forward on [text; video] (gated residuals)."""

    def __init__(self, config: CogVideoXTransformerConfig, site: int, *, dtype, rngs: nnx.Rngs):
        self.norm1 = CogVideoXLayerNormZero(config, dtype=dtype, rngs=rngs)
        self.attn1 = CogVideoXAttention(config, site, dtype=dtype, rngs=rngs)
        self.norm2 = CogVideoXLayerNormZero(config, dtype=dtype, rngs=rngs)
        self.ff = FeedForward(config, dtype=dtype, rngs=rngs)

    def __call__(self, video, text, temb, ctx: SiteContext, rotary):
        length = text.shape[1]
        normed_video, normed_text, gate, enc_gate = self.norm1(video, text, temb)
        attn_video, attn_text = self.attn1(normed_video, normed_text, ctx, rotary)
        video = video + gate * attn_video
        text = text + enc_gate * attn_text
        normed_video, normed_text, gate, enc_gate = self.norm2(video, text, temb)
        ff = self.ff(jnp.concatenate([normed_text, normed_video], axis=1))  # [B, N, D]
        return video + gate * ff[:, length:], text + enc_gate * ff[:, :length]


class AdaLayerNorm(nnx.Module):
    """diffusers ``AdaLayerNorm`` (chunk_dim=1): norm(x)·(1 + scale) + shift with [shift, scale] = linear(SiLU(temb))."""

    def __init__(self, config: CogVideoXTransformerConfig, *, dtype, rngs: nnx.Rngs):
        self.linear = _linear(config.time_embed_dim, 2 * config.inner_dim, dtype=dtype, rngs=rngs)
        self.norm = _layer_norm(config.inner_dim, config.norm_eps, config.norm_elementwise_affine, dtype=dtype, rngs=rngs)

    def __call__(self, x, temb):
        shift, scale = jnp.split(self.linear(jax.nn.silu(temb))[:, None, :], 2, axis=-1)  # each [B, 1, D]
        return self.norm(x) * (1 + scale) + shift


class CogVideoXTransformer3DModel(nnx.Module):
    """The CogVideoX denoiser; see the module docstring for layouts and sites.

    Build with random weights from a :class:`CogVideoXTransformerConfig`, or load a checkpoint with
    :meth:`from_pretrained` (``convert.cogvideox.load_cogvideox_transformer``).
    """

    def __init__(self, config: CogVideoXTransformerConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.dtype = jnp.dtype(dtype)
        self.patch_embed = CogVideoXPatchEmbed(config, dtype=dtype, rngs=rngs)
        self.time_embedding = TimestepEmbedding(config.inner_dim, config.time_embed_dim, dtype=dtype, rngs=rngs)
        self.transformer_blocks = nnx.List([
            CogVideoXBlock(config, i, dtype=dtype, rngs=rngs) for i in range(config.num_layers)
        ])
        self.norm_final = _layer_norm(config.inner_dim, config.norm_eps, config.norm_elementwise_affine, dtype=dtype, rngs=rngs)
        self.norm_out = AdaLayerNorm(config, dtype=dtype, rngs=rngs)
        self.proj_out = _linear(config.inner_dim, config.patch_size**2 * config.out_channels, dtype=dtype, rngs=rngs)
        self.site_table = SiteTable.build(
            (f"transformer_blocks.{i}.attn1", "joint", config.num_attention_heads, config.attention_head_dim)
            for i in range(config.num_layers)
        )

    @classmethod
    def abstract(cls, config: CogVideoXTransformerConfig, *, dtype=jnp.float32) -> "CogVideoXTransformer3DModel":
        """The model with abstract parameters (shapes and dtypes, no memory, no random init), to load into."""

        def build() -> CogVideoXTransformer3DModel:
            with nnx.var_defaults(ref=True):  # a ref-backed RNG counter keeps tracing linear in the layer count
                rngs = nnx.Rngs(0)
            return cls(config, dtype=dtype, rngs=rngs)

        return nnx.eval_shape(build)

    @property
    def downsampling_factor(self) -> int:
        """The latent height and width must be multiples of this (the patch size)."""
        return self.config.patch_size

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
        """Predict the denoiser output (v for CogVideoX's v-prediction schedulers) for a batch of videos.

        Args:
          sample: [B, F, H, W, C] latents (C = in_channels; F latent frames).
          timesteps: [B] or a scalar.
          encoder_hidden_states: [B, L, text_embed_dim] text states (L = max_text_seq_length when the model
            uses sin-cos position embeddings, as 2B does).
          rewiring: a :class:`ieadapt_jax.Rewiring` of shape [sites, B] (rows = videos), or None.
          record: what records entropy/energy (False, True, "joint" / "self", site names or positions).
          backend: attention backend ("auto", "reference", "chunked", "cudnn").
          active: None (every site takes its rewiring slice), or the sites that do (static).

        Returns:
          (output [B, F, H, W, out_channels] in the model dtype, Record of [recorded sites, B] or None).
        """
        b, f, h, w = self._check_inputs(sample, encoder_hidden_states)
        timesteps = jnp.asarray(timesteps)
        if timesteps.ndim > 1 or (timesteps.ndim == 1 and timesteps.shape[0] not in (1, b)):
            raise ValueError(f"timesteps must be a scalar or [B] = [{b}], got shape {list(timesteps.shape)}")
        timesteps = jnp.broadcast_to(timesteps.reshape(-1), (b,))
        cfg, p = self.config, self.config.patch_size
        ctx = SiteContext(self.site_table, rows=b, rewiring=rewiring, record=record, backend=backend, active=active)

        t_emb = timestep_embedding(timesteps, cfg.inner_dim, flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift)
        temb = self.time_embedding(t_emb.astype(self.dtype))  # [B, time_embed_dim]
        text, video = self.patch_embed(encoder_hidden_states.astype(self.dtype), sample.astype(self.dtype))
        rotary = None
        if cfg.use_rotary_positional_embeddings:
            cos, sin = rotary_tables(cfg, f, h // p, w // p)
            rotary = (jnp.asarray(cos), jnp.asarray(sin))  # each [Nv, head_dim]
        else:
            video = video + jnp.asarray(sincos_position_embeddings(cfg, f, h // p, w // p), self.dtype)[None]
        for block in self.transformer_blocks:
            video, text = block(video, text, temb, ctx, rotary)
        video = self.norm_out(self.norm_final(video), temb)
        out = self.proj_out(video)  # [B, F·h'·w', C·p·p], features ordered (channel, row, column)
        out = out.reshape(b, f, h // p, w // p, cfg.out_channels, p, p)
        out = out.transpose(0, 1, 2, 5, 3, 6, 4).reshape(b, f, h, w, cfg.out_channels)  # [B, F, H, W, C]
        return out, ctx.records()

    def _check_inputs(self, sample, encoder_hidden_states) -> tuple[int, int, int, int]:
        cfg = self.config
        if getattr(sample, "ndim", None) != 5:
            raise ValueError(f"sample must be [B, F, H, W, C] (channels-last latents), got shape {list(getattr(sample, 'shape', ()))}")
        b, f, h, w, c = sample.shape
        if c != cfg.in_channels:
            raise ValueError(
                f"sample has {c} channels in its last axis, the model takes {cfg.in_channels}; the layout is "
                "[B, F, H, W, C] (diffusers uses [B, F, C, H, W]: transpose(0, 1, 3, 4, 2))"
            )
        if h % cfg.patch_size or w % cfg.patch_size:
            raise ValueError(f"latent height and width must be multiples of the patch size {cfg.patch_size}, got {h}x{w}")
        if getattr(encoder_hidden_states, "ndim", None) != 3:
            raise ValueError(f"encoder_hidden_states must be [B, L, D], got shape {list(getattr(encoder_hidden_states, 'shape', ()))}")
        if encoder_hidden_states.shape[0] != b:
            raise ValueError(f"encoder_hidden_states has batch {encoder_hidden_states.shape[0]}, sample has {b} videos")
        if encoder_hidden_states.shape[-1] != cfg.text_embed_dim:
            raise ValueError(
                f"encoder_hidden_states has width {encoder_hidden_states.shape[-1]}, the model's text_embed_dim is {cfg.text_embed_dim}"
            )
        if not cfg.use_rotary_positional_embeddings and encoder_hidden_states.shape[1] != cfg.max_text_seq_length:
            raise ValueError(
                f"this model adds position embeddings laid out for {cfg.max_text_seq_length} text tokens; "
                f"encoder_hidden_states has {encoder_hidden_states.shape[1]} (pad the prompt to max_text_seq_length)"
            )
        return b, f, h, w
