"""The configuration of the AnimateDiff motion UNet (:mod:`.unet_motion`): the fields of a diffusers
``UNetMotionModel`` config.json this port uses, read from that file or from a ``UNet2DConditionModel`` config
plus a ``MotionAdapter`` config (as ``UNetMotionModel.from_unet2d``), with every unsupported option refused by
name (:class:`~ieadapt_jax.core.errors.ConfigError`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..core.errors import ConfigError

CROSS_DOWN = "CrossAttnDownBlockMotion"
PLAIN_DOWN = "DownBlockMotion"
CROSS_UP = "CrossAttnUpBlockMotion"
PLAIN_UP = "UpBlockMotion"


_INT_KEYS = ("in_channels", "out_channels", "downsample_padding", "norm_num_groups", "mid_block_layers",
             "motion_max_seq_length", "transformer_layers_per_mid_block")
_FLOAT_KEYS = ("mid_block_scale_factor", "norm_eps")
_INTS_KEYS = ("block_out_channels", "layers_per_block", "transformer_layers_per_block", "num_attention_heads",
              "attention_head_dim", "cross_attention_dim", "temporal_transformer_layers_per_block",
              "reverse_transformer_layers_per_block", "motion_num_attention_heads", "reverse_motion_num_attention_heads",
              "reverse_temporal_transformer_layers_per_block", "temporal_transformer_layers_per_mid_block",
              "motion_layers_per_block", "motion_transformer_layers_per_block", "motion_norm_num_groups")
_STRINGS_KEYS = ("down_block_types", "up_block_types")
_BOOL_KEYS = ("use_linear_projection", "use_motion_mid_block")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_types(config: Mapping[str, Any]) -> None:
    """Every config.json value this port reads has the type it needs; else a :class:`ConfigError` naming the key."""
    def bad(key, what):
        raise ConfigError(f"key {key!r} has the value {config[key]!r} ({type(config[key]).__name__}); expected {what}")

    for key in _INT_KEYS:
        if config.get(key) is not None and not _is_int(config[key]):
            bad(key, "an integer")
    for key in _FLOAT_KEYS:
        if config.get(key) is not None and not (_is_int(config[key]) or isinstance(config[key], float)):
            bad(key, "a number")
    for key in _INTS_KEYS:
        value = config.get(key)
        items = value if isinstance(value, (list, tuple)) else [value]
        flat = [v for item in items for v in (item if isinstance(item, (list, tuple)) else [item])]
        if value is not None and not all(_is_int(v) for v in flat):
            bad(key, "an integer or a list of integers")
    for key in _STRINGS_KEYS:
        value = config.get(key)
        if value is not None and not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            bad(key, "a list of block type names")
    for key in _BOOL_KEYS:
        if config.get(key) is not None and not isinstance(config[key], bool):
            bad(key, "true or false")


def _per_block(value, count: int, name: str) -> tuple[int, ...]:
    """An int or a per-block list as a tuple of ``count`` ints."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (int(value),) * count
    items = tuple(value)
    if len(items) != count:
        raise ConfigError(f"{name} has {len(items)} entries, the UNet has {count} blocks: {list(items)}")
    if any(isinstance(v, (list, tuple)) for v in items):
        raise ConfigError(f"{name} with per-layer lists (asymmetric UNets) is not supported: {list(items)}")
    return tuple(int(v) for v in items)


@dataclasses.dataclass(frozen=True)
class UNetMotionConfig:
    """The fields of a diffusers ``UNetMotionModel`` config.json this port uses (per-block fields expanded).

    Build with :meth:`from_dict` (a UNetMotionModel config.json) or :meth:`from_unet2d` (a
    UNet2DConditionModel config plus a MotionAdapter config, as ``UNetMotionModel.from_unet2d``).
    """

    in_channels: int = 4
    out_channels: int = 4
    down_block_types: tuple[str, ...] = (CROSS_DOWN, CROSS_DOWN, CROSS_DOWN, PLAIN_DOWN)
    up_block_types: tuple[str, ...] = (PLAIN_UP, CROSS_UP, CROSS_UP, CROSS_UP)
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: tuple[int, ...] = (2, 2, 2, 2)
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 768
    num_attention_heads: tuple[int, ...] = (8, 8, 8, 8)
    transformer_layers_per_block: tuple[int, ...] = (1, 1, 1, 1)
    reverse_transformer_layers_per_block: tuple[int, ...] = (1, 1, 1, 1)
    transformer_layers_per_mid_block: int = 1
    use_linear_projection: bool = False
    motion_num_attention_heads: tuple[int, ...] = (8, 8, 8, 8)
    reverse_motion_num_attention_heads: tuple[int, ...] = (8, 8, 8, 8)
    motion_max_seq_length: int = 32
    temporal_transformer_layers_per_block: tuple[int, ...] = (1, 1, 1, 1)
    reverse_temporal_transformer_layers_per_block: tuple[int, ...] = (1, 1, 1, 1)
    temporal_transformer_layers_per_mid_block: tuple[int, ...] = (1,)
    use_motion_mid_block: bool = False
    mid_block_layers: int = 1

    def __post_init__(self):
        n = len(self.block_out_channels)
        for name in ("down_block_types", "up_block_types", "layers_per_block", "num_attention_heads",
                     "transformer_layers_per_block", "reverse_transformer_layers_per_block",
                     "motion_num_attention_heads", "reverse_motion_num_attention_heads",
                     "temporal_transformer_layers_per_block", "reverse_temporal_transformer_layers_per_block"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"{name} has {len(getattr(self, name))} entries, block_out_channels has {n}")
        bad = [t for t in self.down_block_types if t not in (CROSS_DOWN, PLAIN_DOWN)]
        bad += [t for t in self.up_block_types if t not in (CROSS_UP, PLAIN_UP)]
        if bad:
            raise ConfigError(f"unknown block types {bad}; supported: {CROSS_DOWN}, {PLAIN_DOWN}, {CROSS_UP}, {PLAIN_UP}")
        if len(self.temporal_transformer_layers_per_mid_block) != self.mid_block_layers:
            raise ConfigError(
                f"temporal_transformer_layers_per_mid_block has {len(self.temporal_transformer_layers_per_mid_block)} "
                f"entries, mid_block_layers is {self.mid_block_layers}"
            )
        if self.downsample_padding not in (0, 1):
            raise ConfigError(f"downsample_padding must be 0 or 1, got {self.downsample_padding}")

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "UNetMotionConfig":
        """From a diffusers ``UNetMotionModel`` config (config.json contents)."""
        check_types(config)
        _reject_unsupported(config, "UNetMotionModel")
        blocks = list(config.get("down_block_types", cls.down_block_types))
        n = len(blocks)

        def per(name, default):
            return _per_block(config.get(name) if config.get(name) is not None else default, n, name)

        heads = config.get("num_attention_heads") or config.get("attention_head_dim") or 8
        tl = per("transformer_layers_per_block", 1)
        ttl = per("temporal_transformer_layers_per_block", 1)
        mh = per("motion_num_attention_heads", 8)
        mid_layers = int(config.get("mid_block_layers", 1))
        mid_t = config.get("transformer_layers_per_mid_block")
        mid_tt = config.get("temporal_transformer_layers_per_mid_block", 1)
        mid_tt = (int(mid_tt),) * mid_layers if isinstance(mid_tt, int) else tuple(int(v) for v in mid_tt)
        return cls(
            in_channels=int(config.get("in_channels", 4)),
            out_channels=int(config.get("out_channels", 4)),
            down_block_types=tuple(blocks),
            up_block_types=tuple(config.get("up_block_types", cls.up_block_types)),
            block_out_channels=tuple(int(c) for c in config.get("block_out_channels", cls.block_out_channels)),
            layers_per_block=per("layers_per_block", 2),
            downsample_padding=int(config.get("downsample_padding", 1)),
            mid_block_scale_factor=float(config.get("mid_block_scale_factor", 1.0)),
            norm_num_groups=int(config.get("norm_num_groups", 32)),
            norm_eps=float(config.get("norm_eps", 1e-5)),
            cross_attention_dim=_single_cross_dim(config.get("cross_attention_dim", 1280)),
            num_attention_heads=_per_block(heads, n, "num_attention_heads"),
            transformer_layers_per_block=tl,
            reverse_transformer_layers_per_block=per("reverse_transformer_layers_per_block", tuple(reversed(tl))),
            transformer_layers_per_mid_block=int(mid_t if mid_t is not None else tl[-1]),
            use_linear_projection=bool(config.get("use_linear_projection", False)),
            motion_num_attention_heads=mh,
            reverse_motion_num_attention_heads=per("reverse_motion_num_attention_heads", tuple(reversed(mh))),
            motion_max_seq_length=int(config.get("motion_max_seq_length", 32)),
            temporal_transformer_layers_per_block=ttl,
            reverse_temporal_transformer_layers_per_block=per(
                "reverse_temporal_transformer_layers_per_block", tuple(reversed(ttl))
            ),
            temporal_transformer_layers_per_mid_block=mid_tt,
            use_motion_mid_block=bool(config.get("use_motion_mid_block", True)),
            mid_block_layers=mid_layers,
        )

    @classmethod
    def from_unet2d(cls, unet_config: Mapping[str, Any], adapter_config: Mapping[str, Any]) -> "UNetMotionConfig":
        """As ``UNetMotionModel.from_unet2d(unet, motion_adapter)``: UNet2DConditionModel + MotionAdapter configs."""
        check_types(unet_config)
        check_types(adapter_config)
        unet_config = dict(unet_config)
        for key, default in (("class_embed_type", None), ("resnet_time_scale_shift", "default"),
                             ("center_input_sample", False), ("only_cross_attention", False),
                             ("dual_cross_attention", False), ("time_embedding_type", "positional"),
                             ("conv_in_kernel", 3), ("conv_out_kernel", 3),
                             ("mid_block_type", "UNetMidBlock2DCrossAttn"), ("attention_type", "default"),
                             ("flip_sin_to_cos", True), ("freq_shift", 0)):
            value = unet_config.get(key)
            if value is not None and value != default:
                raise ConfigError(f"UNet2DConditionModel config {key}={unet_config[key]!r} is not supported (need {default!r})")
        if adapter_config.get("conv_in_channels"):
            raise ConfigError("motion adapters with their own conv_in (conv_in_channels) are not supported")
        n = len(unet_config.get("down_block_types", ()))
        if len(adapter_config.get("block_out_channels", ())) != n:
            raise ConfigError(
                f"incompatible motion adapter: {len(adapter_config.get('block_out_channels', ()))} blocks, the UNet has {n}"
            )
        unet_layers = _per_block(unet_config.get("layers_per_block", 2), n, "layers_per_block")
        adapter_layers = _per_block(adapter_config.get("motion_layers_per_block", 2), n, "motion_layers_per_block")
        if unet_layers != adapter_layers:
            raise ConfigError(f"incompatible motion adapter: layers per block {list(adapter_layers)}, UNet {list(unet_layers)}")
        if tuple(adapter_config["block_out_channels"]) != tuple(unet_config["block_out_channels"]):
            raise ConfigError(
                f"incompatible motion adapter: channels {list(adapter_config['block_out_channels'])}, "
                f"UNet {list(unet_config['block_out_channels'])}"
            )
        merged = {k: v for k, v in unet_config.items() if k not in ("flip_sin_to_cos", "freq_shift")}
        merged["down_block_types"] = [CROSS_DOWN if "CrossAttn" in t else PLAIN_DOWN for t in unet_config["down_block_types"]]
        merged["up_block_types"] = [CROSS_UP if "CrossAttn" in t else PLAIN_UP for t in unet_config["up_block_types"]]
        merged["motion_num_attention_heads"] = adapter_config.get("motion_num_attention_heads", 8)
        merged["motion_max_seq_length"] = adapter_config.get("motion_max_seq_length", 32)
        merged["use_motion_mid_block"] = adapter_config.get("use_motion_mid_block", True)
        merged["layers_per_block"] = adapter_config.get("motion_layers_per_block", 2)
        merged["temporal_transformer_layers_per_mid_block"] = adapter_config.get("motion_transformer_layers_per_mid_block", 1)
        merged["temporal_transformer_layers_per_block"] = adapter_config.get("motion_transformer_layers_per_block", 1)
        merged["mid_block_layers"] = 1
        if not merged.get("num_attention_heads"):
            merged["num_attention_heads"] = merged.get("attention_head_dim", 8)
        return cls.from_dict(merged)


def _single_cross_dim(value) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ConfigError(f"per-block cross_attention_dim {list(value)} is not supported")
        return int(value[0])
    return int(value)


def _reject_unsupported(config: Mapping[str, Any], what: str) -> None:
    for key in ("addition_embed_type", "encoder_hid_dim_type", "time_cond_proj_dim"):
        if config.get(key) is not None:
            raise ConfigError(f"{what} config {key}={config[key]!r} is not supported by this port")
    if config.get("act_fn", "silu") != "silu":
        raise ConfigError(f"{what} config act_fn={config['act_fn']!r} is not supported (only 'silu')")
