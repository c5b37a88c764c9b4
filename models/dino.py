"""Self-supervised ViT feature extractors in Flax NNX: DINO (transformers ``ViTModel``, as
``facebook/dino-vitb16`` is stored) and DINOv2 (transformers ``Dinov2Model``).

Parameter paths are the checkpoint keys that transformers reads and writes
(``embeddings.cls_token``, ``embeddings.position_embeddings``, ``embeddings.patch_embeddings.projection``,
``encoder.layer.{i}.attention.attention.{query,key,value}``, ``encoder.layer.{i}.attention.output.dense``,
ViT: ``.intermediate.dense``, ``.output.dense``, ``.layernorm_before``, ``.layernorm_after``;
DINOv2: ``.norm1``, ``.norm2``, ``.mlp.fc1``, ``.mlp.fc2``, ``.layer_scale{1,2}.lambda1``; ``layernorm``),
so :func:`convert.fill.fill_module` loads a ``save_pretrained`` folder by name. Not loaded: ViT's
pooler (dense + tanh, unused by DINO features) and DINOv2's mask token (pre-training only).

    dino = load_dino("weights/dino")     # ieadapt_jax.convert.metrics_weights; facebook/dino-vitb16
    out = dino(pixel_values, pos_interpolation="dino")         # pixel_values [N, H, W, 3], normalised
    features = out.last_hidden_state[:, 0]                     # [N, D]: DINO's image feature

**Position embeddings at other resolutions** (``pos_interpolation``): ``None`` requires the config's
image size; ``"transformers"`` resizes the patch grid of position embeddings with
``interpolate(size=(h, w), mode="bicubic")`` as transformers' ``interpolate_pos_encoding=True`` does;
``"dino"`` as the original DINO code (torch.hub ``facebookresearch/dino``, which VBench loads) does:
``interpolate(scale_factor=((h + 0.1) / n, (w + 0.1) / n), mode="bicubic")``. Both skip the
interpolation when the grid is the stored one and square.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from ..core.attention import attend
from .resize import resize_like_torch

_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}
POS_INTERPOLATIONS = (None, "transformers", "dino")


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """The fields of a transformers ViTConfig / Dinov2Config that the forward pass uses.

    ``mlp_ratio``, ``layerscale_value`` and ``use_swiglu_ffn`` are DINOv2's; ViT uses
    ``intermediate_size``. Defaults are ``facebook/dino-vitb16``'s architecture (ViT-B/16).
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    mlp_ratio: float = 4.0
    layerscale_value: float = 1.0
    use_swiglu_ffn: bool = False

    def __post_init__(self):
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"unsupported ViT hidden_act {self.hidden_act!r}; supported: {', '.join(_ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.use_swiglu_ffn:
            raise ValueError("DINOv2 with use_swiglu_ffn (the giant model) is not supported; use ViT-S/B/L DINOv2")

    @property
    def grid(self) -> int:
        """Patches per side of the stored position embeddings."""
        return self.image_size // self.patch_size

    @classmethod
    def from_dict(cls, config: dict) -> "ViTConfig":
        """From a config.json dict (unknown keys ignored; ``image_size`` / ``patch_size`` may be pairs
        of equal values)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in config.items() if k in names}
        for key in ("image_size", "patch_size"):
            value = kwargs.get(key)
            if isinstance(value, (list, tuple)):
                if len(set(value)) != 1:
                    raise ValueError(f"non-square {key} {value} is not supported")
                kwargs[key] = value[0]
        return cls(**kwargs)


class ViTModelOutput(NamedTuple):
    """last_hidden_state [N, 1 + P, D] after the final ``layernorm``; its class token [:, 0] is the
    DINO image feature."""

    last_hidden_state: jax.Array


class PatchEmbeddings(nnx.Module):
    """``patch_embeddings.projection``: a stride-``patch_size`` convolution (with bias)."""

    def __init__(self, config: ViTConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        p = config.patch_size
        self.num_channels = config.num_channels
        self.projection = nnx.Conv(
            config.num_channels, config.hidden_size, (p, p), strides=(p, p), padding="VALID",
            dtype=dtype, param_dtype=dtype, rngs=rngs,
        )

    def __call__(self, pixel_values: jax.Array) -> jax.Array:
        """[N, H, W, C] -> [N, h, w, D] with h = H // patch_size, w = W // patch_size."""
        if pixel_values.ndim != 4 or pixel_values.shape[-1] != self.num_channels:
            raise ValueError(f"pixel_values must be [N, H, W, {self.num_channels}], got {list(pixel_values.shape)}")
        return self.projection(pixel_values)


class Embeddings(nnx.Module):
    """Class token, patch embeddings and (interpolated) learned position embeddings."""

    def __init__(self, config: ViTConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        d = config.hidden_size
        self.config = config
        self.cls_token = nnx.Param(jnp.zeros((1, 1, d), dtype))
        self.position_embeddings = nnx.Param(jax.random.normal(rngs.params(), (1, config.grid**2 + 1, d), dtype))
        self.patch_embeddings = PatchEmbeddings(config, dtype=dtype, rngs=rngs)

    def __call__(self, pixel_values: jax.Array, pos_interpolation: str | None) -> jax.Array:
        """[N, H, W, C] -> tokens [N, 1 + h·w, D]."""
        if pos_interpolation not in POS_INTERPOLATIONS:
            raise ValueError(f"pos_interpolation must be one of {POS_INTERPOLATIONS}, got {pos_interpolation!r}")
        patches = self.patch_embeddings(pixel_values.astype(self.cls_token.dtype))  # [N, h, w, D]
        N, h, w, D = patches.shape
        tokens = jnp.concatenate(
            [jnp.broadcast_to(self.cls_token[...], (N, 1, D)), patches.reshape(N, h * w, D)], axis=1
        )  # [N, 1 + h·w, D]
        return tokens + self.positions(h, w, pos_interpolation)

    def positions(self, h: int, w: int, pos_interpolation: str | None) -> jax.Array:
        """Position embeddings [1, 1 + h·w, D] for an h x w patch grid."""
        table = self.position_embeddings[...]
        n = self.config.grid
        if h * w == n * n and h == w:
            return table
        if pos_interpolation is None:
            size = self.config.image_size
            raise ValueError(
                f"input gives a {h}x{w} patch grid but the model was trained at {size}x{size} ({n}x{n}); "
                "resize the input or pass pos_interpolation='transformers' or 'dino'"
            )
        grid = table[:, 1:].reshape(1, n, n, -1).astype(jnp.float32)  # [1, n, n, D]
        if pos_interpolation == "dino":
            factors = ((h + 0.1) / n, (w + 0.1) / n)
            out_size = (math.floor(n * factors[0]), math.floor(n * factors[1]))
            grid = resize_like_torch(grid, out_size, "bicubic", scale_factor=factors)
        else:
            grid = resize_like_torch(grid, (h, w), "bicubic")
        if grid.shape[1:3] != (h, w):
            raise ValueError(f"position interpolation gave a {grid.shape[1]}x{grid.shape[2]} grid for {h}x{w} patches")
        grid = grid.reshape(1, h * w, -1).astype(table.dtype)  # [1, h·w, D]
        return jnp.concatenate([table[:, :1], grid], axis=1)


class SelfAttention(nnx.Module):
    """``attention.attention``: query / key / value projections."""

    def __init__(self, config: ViTConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        d = config.hidden_size
        kw = dict(use_bias=config.qkv_bias, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.num_heads = config.num_attention_heads
        self.query = nnx.Linear(d, d, **kw)
        self.key = nnx.Linear(d, d, **kw)
        self.value = nnx.Linear(d, d, **kw)

    def __call__(self, x: jax.Array, backend: str) -> jax.Array:
        """x [N, L, D] -> attention output [N, L, D] (before the output projection)."""
        N, L, D = x.shape
        heads = (N, L, self.num_heads, D // self.num_heads)
        q, k, v = (proj(x).reshape(heads) for proj in (self.query, self.key, self.value))  # [N, L, H, Dh]
        out, _ = attend(q, k, v, backend=backend)
        return out.reshape(N, L, D)  # [N, L, H, Dh] -> [N, L, D]


class Dense(nnx.Module):
    """A module holding one ``dense`` Linear (transformers' ViTSelfOutput / ViTIntermediate / ViTOutput)."""

    def __init__(self, in_features: int, out_features: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.dense = nnx.Linear(in_features, out_features, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dense(x)


class Attention(nnx.Module):
    """``attention``: self-attention then its ``output.dense`` projection."""

    def __init__(self, config: ViTConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.attention = SelfAttention(config, dtype=dtype, rngs=rngs)
        self.output = Dense(config.hidden_size, config.hidden_size, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, backend: str) -> jax.Array:
        return self.output(self.attention(x, backend))


class LayerScale(nnx.Module):
    """DINOv2's per-channel residual scale ``lambda1``."""

    def __init__(self, config: ViTConfig, *, dtype=jnp.float32):
        self.lambda1 = nnx.Param(jnp.full((config.hidden_size,), config.layerscale_value, dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.lambda1[...]


class MLP(nnx.Module):
    """DINOv2's ``mlp``: fc1 -> activation -> fc2, hidden width ``hidden_size * mlp_ratio``."""

    def __init__(self, config: ViTConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        d, hidden = config.hidden_size, int(config.hidden_size * config.mlp_ratio)
        kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.activation = _ACTIVATIONS[config.hidden_act]
        self.fc1 = nnx.Linear(d, hidden, **kw)
        self.fc2 = nnx.Linear(hidden, d, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.activation(self.fc1(x)))


def _layer_norm(config: ViTConfig, dtype, rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=dtype, rngs=rngs)


class ViTLayer(nnx.Module):
    """Pre-norm ViT block: x + attention(layernorm_before(x)), then x + output(act(intermediate(layernorm_after(x))))."""

    def __init__(self, config: ViTConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.activation = _ACTIVATIONS[config.hidden_act]
        self.attention = Attention(config, dtype=dtype, rngs=rngs)
        self.intermediate = Dense(config.hidden_size, config.intermediate_size, dtype=dtype, rngs=rngs)
        self.output = Dense(config.intermediate_size, config.hidden_size, dtype=dtype, rngs=rngs)
        self.layernorm_before = _layer_norm(config, dtype, rngs)
        self.layernorm_after = _layer_norm(config, dtype, rngs)

    def __call__(self, x: jax.Array, backend: str) -> jax.Array:
        x = x + self.attention(self.layernorm_before(x), backend)
        return x + self.output(self.activation(self.intermediate(self.layernorm_after(x))))


class Dinov2Layer(nnx.Module):
    """DINOv2 block: x + layer_scale1(attention(norm1(x))), then x + layer_scale2(mlp(norm2(x)))."""

    def __init__(self, config: ViTConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.norm1 = _layer_norm(config, dtype, rngs)
        self.attention = Attention(config, dtype=dtype, rngs=rngs)
        self.layer_scale1 = LayerScale(config, dtype=dtype)
        self.norm2 = _layer_norm(config, dtype, rngs)
        self.mlp = MLP(config, dtype=dtype, rngs=rngs)
        self.layer_scale2 = LayerScale(config, dtype=dtype)

    def __call__(self, x: jax.Array, backend: str) -> jax.Array:
        x = x + self.layer_scale1(self.attention(self.norm1(x), backend))
        return x + self.layer_scale2(self.mlp(self.norm2(x)))


class Encoder(nnx.Module):
    """``encoder.layer.{i}``: the stack of blocks."""

    def __init__(self, config: ViTConfig, block, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.layer = nnx.List([block(config, dtype=dtype, rngs=rngs) for _ in range(config.num_hidden_layers)])

    def __call__(self, x: jax.Array, backend: str) -> jax.Array:
        for layer in self.layer:
            x = layer(x, backend)
        return x


class _ViTBase(nnx.Module):
    """Embeddings, encoder of ``block``s, final ``layernorm``; subclasses pick the block and loading rules."""

    BLOCK = ViTLayer
    SKIP: tuple[str, ...] = ()
    NAME = "ViTModel"
    DEFAULT_POS_INTERPOLATION: str | None = None

    def __init__(self, config: ViTConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = Embeddings(config, dtype=dtype, rngs=rngs)
        self.encoder = Encoder(config, self.BLOCK, dtype=dtype, rngs=rngs)
        self.layernorm = _layer_norm(config, dtype, rngs)

    def __call__(
        self, pixel_values: jax.Array, *, pos_interpolation: str | None = "default", backend: str = "auto"
    ) -> ViTModelOutput:
        """pixel_values [N, H, W, C] (normalised) -> :class:`ViTModelOutput`.

        ``pos_interpolation``: None, "transformers" or "dino" (module docstring); "default" is the
        model's transformers behaviour (ViT: None, DINOv2: "transformers").
        """
        if pos_interpolation == "default":
            pos_interpolation = self.DEFAULT_POS_INTERPOLATION
        x = self.embeddings(pixel_values, pos_interpolation)
        return ViTModelOutput(self.layernorm(self.encoder(x, backend)))


class ViTModel(_ViTBase):
    """transformers ``ViTModel`` without its pooler: the architecture of ``facebook/dino-vitb16``."""

    BLOCK = ViTLayer
    SKIP = ("pooler.dense.weight", "pooler.dense.bias")
    NAME = "ViTModel"
    DEFAULT_POS_INTERPOLATION = None


class Dinov2Model(_ViTBase):
    """transformers ``Dinov2Model`` (layer scale, ``mlp.fc1/fc2``); position embeddings always interpolated."""

    BLOCK = Dinov2Layer
    SKIP = ("embeddings.mask_token",)
    NAME = "Dinov2Model"
    DEFAULT_POS_INTERPOLATION = "transformers"
