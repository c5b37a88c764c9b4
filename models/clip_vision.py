"""The CLIP vision tower and the two-tower ``CLIPModel`` (transformers) in Flax NNX.

Parameter paths are transformers' (``vision_model.embeddings.patch_embedding``, ``.class_embedding``,
``.position_embedding``, ``vision_model.pre_layrnorm`` [sic], ``vision_model.encoder.layers.{i}...``,
``vision_model.post_layernorm``, ``visual_projection``, ``text_projection``, ``logit_scale``; the text
tower is :class:`models.clip_text.CLIPTextModel` under ``text_model.``), so a ``CLIPModel``
``save_pretrained`` folder such as ``openai/clip-vit-large-patch14`` loads by name.

    clip = CLIPModel.from_pretrained("weights/clip")
    image_embeds = clip.get_image_features(pixel_values)   # pixel_values [N, 224, 224, 3], normalised
    text_embeds = clip.get_text_features(input_ids)        # input_ids [N, L]

Images are channels-last ``[N, H, W, 3]`` (transformers takes ``[N, 3, H, W]``), already resized,
cropped and normalised (:func:`ieadapt_jax.scoring.clip_pixels`). The encoder layers are the text
tower's, built non-causal; attention goes through :func:`ieadapt_jax.attend`.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from .clip_text import CLIP_ACTIVATIONS, CLIPEncoder, CLIPTextConfig, CLIPTextModel


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    """The fields of a transformers CLIPVisionConfig that the forward pass uses."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.hidden_act not in CLIP_ACTIVATIONS:
            raise ValueError(f"unsupported CLIP hidden_act {self.hidden_act!r}; supported: {', '.join(CLIP_ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_dict(cls, config: dict) -> "CLIPVisionConfig":
        """From a config.json dict: a CLIPVisionConfig, or a CLIPConfig (its ``vision_config`` is used)."""
        config = config.get("vision_config", config)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    """A two-tower CLIP: text and vision configs and the shared embedding width ``projection_dim``."""

    text: CLIPTextConfig
    vision: CLIPVisionConfig
    projection_dim: int = 512

    @classmethod
    def from_dict(cls, config: dict) -> "CLIPConfig":
        """From a transformers CLIPConfig dict (``text_config``, ``vision_config``, ``projection_dim``)."""
        missing = [k for k in ("text_config", "vision_config") if not isinstance(config.get(k), dict)]
        if missing:
            raise ValueError(
                f"not a CLIPModel config: no {' or '.join(missing)} (model_type {config.get('model_type')!r})"
            )
        return cls(
            CLIPTextConfig.from_dict(config["text_config"]),
            CLIPVisionConfig.from_dict(config["vision_config"]),
            int(config.get("projection_dim", 512)),
        )

    @classmethod
    def vit_b_32(cls) -> "CLIPConfig":
        """OpenAI CLIP ViT-B/32 (``openai/clip-vit-base-patch32``)."""
        return cls(
            CLIPTextConfig(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
            CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=32),
            projection_dim=512,
        )

    @classmethod
    def vit_l_14(cls) -> "CLIPConfig":
        """OpenAI CLIP ViT-L/14 (``openai/clip-vit-large-patch14``), the tower of the LAION aesthetic
        predictor and of torchmetrics' default CLIPScore."""
        return cls(
            CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
            CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14),
            projection_dim=768,
        )


class CLIPVisionOutput(NamedTuple):
    """last_hidden_state [N, 1 + P, D] (before post_layernorm); pooler_output [N, D]: the class token
    after post_layernorm, as transformers' ``CLIPVisionModel``."""

    last_hidden_state: jax.Array
    pooler_output: jax.Array


class CLIPVisionEmbeddings(nnx.Module):
    """Patch convolution (no bias), a learned class token and learned absolute position embeddings."""

    def __init__(self, config: CLIPVisionConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        p, d = config.patch_size, config.hidden_size
        kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.config = config
        self.patch_embedding = nnx.Conv(config.num_channels, d, (p, p), strides=(p, p), padding="VALID", use_bias=False, **kw)
        self.class_embedding = nnx.Param(jax.random.normal(rngs.params(), (d,), dtype))
        self.position_embedding = nnx.Embed(config.num_patches + 1, d, **kw)

    def __call__(self, pixel_values: jax.Array) -> jax.Array:
        """pixel_values [N, H, W, C] (H = W = image_size) -> tokens [N, 1 + P, D]."""
        N, H, W, C = pixel_values.shape
        size, channels = self.config.image_size, self.config.num_channels
        if (H, W, C) != (size, size, channels):
            raise ValueError(
                f"CLIP vision input must be [N, {size}, {size}, {channels}] (resized, cropped, normalised), "
                f"got {list(pixel_values.shape)}"
            )
        patches = self.patch_embedding(pixel_values.astype(self.class_embedding.dtype))  # [N, h, w, D]
        patches = patches.reshape(N, -1, patches.shape[-1])  # [N, P, D]
        cls = jnp.broadcast_to(self.class_embedding[...], (N, 1, patches.shape[-1]))  # [N, 1, D]
        return jnp.concatenate([cls, patches], axis=1) + self.position_embedding.embedding[...][None]


class CLIPVisionTransformer(nnx.Module):
    """transformers ``CLIPVisionTransformer``: embeddings, pre-LayerNorm, encoder, post-LayerNorm on the class token."""

    def __init__(self, config: CLIPVisionConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.config = config
        self.embeddings = CLIPVisionEmbeddings(config, dtype=dtype, rngs=rngs)
        self.pre_layrnorm = nnx.LayerNorm(config.hidden_size, **kw)
        self.encoder = CLIPEncoder(config, causal=False, dtype=dtype, rngs=rngs)
        self.post_layernorm = nnx.LayerNorm(config.hidden_size, **kw)

    def __call__(self, pixel_values: jax.Array, *, backend: str = "auto") -> CLIPVisionOutput:
        """pixel_values [N, H, W, C] -> :class:`CLIPVisionOutput`."""
        x = self.pre_layrnorm(self.embeddings(pixel_values))
        last = self.encoder(x, None, backend)[-1]
        return CLIPVisionOutput(last, self.post_layernorm(last[:, 0]))


class CLIPModel(nnx.Module):
    """transformers ``CLIPModel``: both towers, their projections into the joint space, ``logit_scale``."""

    def __init__(self, config: CLIPConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.config = config
        self.text_model = CLIPTextModel(config.text, dtype=dtype, rngs=rngs)
        self.vision_model = CLIPVisionTransformer(config.vision, dtype=dtype, rngs=rngs)
        self.visual_projection = nnx.Linear(config.vision.hidden_size, config.projection_dim, **kw)
        self.text_projection = nnx.Linear(config.text.hidden_size, config.projection_dim, **kw)
        self.logit_scale = nnx.Param(jnp.asarray(2.6592, dtype))

    def get_image_features(self, pixel_values: jax.Array, *, backend: str = "auto") -> jax.Array:
        """[N, H, W, 3] normalised images -> [N, projection_dim] image embeddings (not L2-normalised)."""
        return self.visual_projection(self.vision_model(pixel_values, backend=backend).pooler_output)

    def get_text_features(
        self, input_ids: jax.Array, attention_mask: jax.Array | None = None, *, backend: str = "auto"
    ) -> jax.Array:
        """[N, L] token ids -> [N, projection_dim] text embeddings (not L2-normalised)."""
        return self.text_projection(self.text_model(input_ids, attention_mask, backend=backend).pooler_output)
