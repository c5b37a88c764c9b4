"""UNetMotionModel vs diffusers on tiny random-weight fixtures (CPU, fp32).

Fixtures follow reference §6: unet_motion_tiny (SD1.5 topology, channels [32, 32, 64, 64], 2 heads, no
mid-block motion module, as v3) and unet_motion_micro (channels [16, 32], one layer, mid-block motion
module on, as v2). diffusers builds them, ``save_pretrained`` writes them, our converter loads them.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from ieadapt_jax.convert.animatediff import load_unet_motion  # noqa: E402
from ieadapt_jax.models import UNetMotionConfig, UNetMotionModel  # noqa: E402

import ieadapt_jax  # noqa: E402
from ieadapt_jax.core import make_forward
from support.tiny_diffusers import build_fixture  # noqa: E402

ATOL = 1e-4


class Fixture:
    def __init__(self, name, tmp):
        self.unet, self.adapter, (self.sample_shape, self.text_shape) = build_fixture(name)
        self.unet.save_pretrained(tmp / "unet")
        self.adapter.save_pretrained(tmp / "adapter")
        self.torch_model = diffusers.UNetMotionModel.from_unet2d(self.unet, self.adapter).eval()
        self.model = load_unet_motion(tmp / "unet", tmp / "adapter", cache_dir=tmp / "cache")
        gen = torch.Generator().manual_seed(1)
        self.sample = torch.randn(*self.sample_shape, generator=gen)
        self.text = torch.randn(*self.text_shape, generator=gen)
        self.timesteps = torch.tensor([17, 503])
        self.frames = self.sample_shape[2]
        self.forward, self.state = make_forward(self.model)

    def jax_inputs(self):
        """Our layout: sample [B, F, H, W, C], text once per video."""
        return (jnp.asarray(self.sample.numpy().transpose(0, 2, 3, 4, 1)), jnp.asarray(self.timesteps.numpy()),
                jnp.asarray(self.text.numpy()))

    def torch_forward(self) -> np.ndarray:
        """diffusers' output in our layout [B, F, H, W, C]; diffusers 0.42 wants the text repeated per frame."""
        with torch.no_grad():
            out = self.torch_model(self.sample, self.timesteps, self.text.repeat_interleave(self.frames, 0)).sample
        return out.numpy().transpose(0, 2, 3, 4, 1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return Fixture("tiny", tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    return Fixture("micro", tmp_path_factory.mktemp("micro"))


@pytest.mark.parametrize("name", ["tiny", "micro"])
def test_output_matches_diffusers(name, request):
    fx = request.getfixturevalue(name)
    table = fx.model.site_table
    out, rec = fx.forward(fx.state, *fx.jax_inputs(), ieadapt_jax.noop(table, 2))
    assert rec is None
    assert out.shape == fx.torch_forward().shape
    np.testing.assert_allclose(np.asarray(out), fx.torch_forward(), atol=ATOL, rtol=0)


def _pag_sites(torch_model, pattern: str) -> list[str]:
    """Self-attention modules whose name matches ``pattern``, as diffusers' PAG selects them."""
    from diffusers.models.attention_processor import Attention

    return [n for n, m in torch_model.named_modules()
            if isinstance(m, Attention) and not m.is_cross_attention and re.search(pattern, n)]


@pytest.mark.parametrize("pattern", [r"mid_block.*attn1", r"down_blocks\.1", r"up_blocks\.2\.attentions\.0"])
def test_identity_perturbation_matches_pag(tiny, pattern):
    """Row 1 perturbed to A→I at the PAG-selected sites == diffusers' PAGIdentitySelfAttnProcessor2_0,
    which splits each attention batch into [first half = video 0, second half = video 1 perturbed]."""
    from diffusers.models.attention_processor import (
        AttnProcessor2_0,
        PAGIdentitySelfAttnProcessor2_0,
    )

    names = _pag_sites(tiny.torch_model, pattern)
    assert names, pattern
    table = tiny.model.site_table
    modules = dict(tiny.torch_model.named_modules())
    try:
        for n in names:
            modules[n].set_processor(PAGIdentitySelfAttnProcessor2_0())
        expected = tiny.torch_forward()
    finally:
        for n in names:
            modules[n].set_processor(AttnProcessor2_0())
    rewiring = ieadapt_jax.perturb(ieadapt_jax.noop(table, 2), table, names, "I", rows=[1])
    out, _ = tiny.forward(tiny.state, *tiny.jax_inputs(), rewiring)
    np.testing.assert_allclose(np.asarray(out), expected, atol=ATOL, rtol=0)
    plain, _ = tiny.forward(tiny.state, *tiny.jax_inputs(), ieadapt_jax.noop(table, 2))
    np.testing.assert_allclose(np.asarray(out)[0], np.asarray(plain)[0], atol=1e-6, rtol=0)
    assert np.abs(np.asarray(out)[1] - np.asarray(plain)[1]).max() > 1e-3


@pytest.mark.parametrize("name", ["tiny", "micro"])
def test_site_table_matches_diffusers_forward_order(name, request):
    from diffusers.models.attention_processor import Attention

    fx = request.getfixturevalue(name)
    calls = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: calls.append((n, mod.heads, mod.is_cross_attention)))
             for n, m in fx.torch_model.named_modules() if isinstance(m, Attention)]
    try:
        fx.torch_forward()
    finally:
        for h in hooks:
            h.remove()
    table = fx.model.site_table
    assert [n for n, _, _ in calls] == list(table.names)
    assert [h for _, h, _ in calls] == [s.heads for s in table]
    assert [("cross" if cross else "self") for _, _, cross in calls] == [("self" if s.is_self else "cross") for s in table]
    assert all(s.kind == "temporal" for s in table if ".motion_modules." in s.name)


SD15_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "downsample_padding": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1,
    "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
ADAPTER_V153 = {
    "_class_name": "MotionAdapter", "block_out_channels": [320, 640, 1280, 1280], "motion_layers_per_block": 2,
    "motion_max_seq_length": 32, "motion_mid_block_layers_per_block": 1, "motion_norm_num_groups": 32,
    "motion_num_attention_heads": 8, "motion_transformer_layers_per_block": 1,
    "motion_transformer_layers_per_mid_block": 1, "use_motion_mid_block": False, "conv_in_channels": None,
}
# Reference Appendix A: (name, kind, head_dim) of all 72 attention calls, forward order; 8 heads each.
APPENDIX_A = [
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1", "spatial_self", 40),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn2", "cross", 40),
    ("down_blocks.0.motion_modules.0.transformer_blocks.0.attn1", "temporal", 40),
    ("down_blocks.0.motion_modules.0.transformer_blocks.0.attn2", "temporal", 40),
    ("down_blocks.0.attentions.1.transformer_blocks.0.attn1", "spatial_self", 40),
    ("down_blocks.0.attentions.1.transformer_blocks.0.attn2", "cross", 40),
    ("down_blocks.0.motion_modules.1.transformer_blocks.0.attn1", "temporal", 40),
    ("down_blocks.0.motion_modules.1.transformer_blocks.0.attn2", "temporal", 40),
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn1", "spatial_self", 80),
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn2", "cross", 80),
    ("down_blocks.1.motion_modules.0.transformer_blocks.0.attn1", "temporal", 80),
    ("down_blocks.1.motion_modules.0.transformer_blocks.0.attn2", "temporal", 80),
    ("down_blocks.1.attentions.1.transformer_blocks.0.attn1", "spatial_self", 80),
    ("down_blocks.1.attentions.1.transformer_blocks.0.attn2", "cross", 80),
    ("down_blocks.1.motion_modules.1.transformer_blocks.0.attn1", "temporal", 80),
    ("down_blocks.1.motion_modules.1.transformer_blocks.0.attn2", "temporal", 80),
    ("down_blocks.2.attentions.0.transformer_blocks.0.attn1", "spatial_self", 160),
    ("down_blocks.2.attentions.0.transformer_blocks.0.attn2", "cross", 160),
    ("down_blocks.2.motion_modules.0.transformer_blocks.0.attn1", "temporal", 160),
    ("down_blocks.2.motion_modules.0.transformer_blocks.0.attn2", "temporal", 160),
    ("down_blocks.2.attentions.1.transformer_blocks.0.attn1", "spatial_self", 160),
    ("down_blocks.2.attentions.1.transformer_blocks.0.attn2", "cross", 160),
    ("down_blocks.2.motion_modules.1.transformer_blocks.0.attn1", "temporal", 160),
    ("down_blocks.2.motion_modules.1.transformer_blocks.0.attn2", "temporal", 160),
    ("down_blocks.3.motion_modules.0.transformer_blocks.0.attn1", "temporal", 160),
    ("down_blocks.3.motion_modules.0.transformer_blocks.0.attn2", "temporal", 160),
    ("down_blocks.3.motion_modules.1.transformer_blocks.0.attn1", "temporal", 160),
    ("down_blocks.3.motion_modules.1.transformer_blocks.0.attn2", "temporal", 160),
    ("mid_block.attentions.0.transformer_blocks.0.attn1", "spatial_self", 160),
    ("mid_block.attentions.0.transformer_blocks.0.attn2", "cross", 160),
    ("up_blocks.0.motion_modules.0.transformer_blocks.0.attn1", "temporal", 160),
    ("up_blocks.0.motion_modules.0.transformer_blocks.0.attn2", "temporal", 160),
    ("up_blocks.0.motion_modules.1.transformer_blocks.0.attn1", "temporal", 160),
    ("up_blocks.0.motion_modules.1.transformer_blocks.0.attn2", "temporal", 160),
    ("up_blocks.0.motion_modules.2.transformer_blocks.0.attn1", "temporal", 160),
    ("up_blocks.0.motion_modules.2.transformer_blocks.0.attn2", "temporal", 160),
    ("up_blocks.1.attentions.0.transformer_blocks.0.attn1", "spatial_self", 160),
    ("up_blocks.1.attentions.0.transformer_blocks.0.attn2", "cross", 160),
    ("up_blocks.1.motion_modules.0.transformer_blocks.0.attn1", "temporal", 160),
    ("up_blocks.1.motion_modules.0.transformer_blocks.0.attn2", "temporal", 160),
    ("up_blocks.1.attentions.1.transformer_blocks.0.attn1", "spatial_self", 160),
    ("up_blocks.1.attentions.1.transformer_blocks.0.attn2", "cross", 160),
    ("up_blocks.1.motion_modules.1.transformer_blocks.0.attn1", "temporal", 160),
    ("up_blocks.1.motion_modules.1.transformer_blocks.0.attn2", "temporal", 160),
    ("up_blocks.1.attentions.2.transformer_blocks.0.attn1", "spatial_self", 160),
    ("up_blocks.1.attentions.2.transformer_blocks.0.attn2", "cross", 160),
    ("up_blocks.1.motion_modules.2.transformer_blocks.0.attn1", "temporal", 160),
    ("up_blocks.1.motion_modules.2.transformer_blocks.0.attn2", "temporal", 160),
    ("up_blocks.2.attentions.0.transformer_blocks.0.attn1", "spatial_self", 80),
    ("up_blocks.2.attentions.0.transformer_blocks.0.attn2", "cross", 80),
    ("up_blocks.2.motion_modules.0.transformer_blocks.0.attn1", "temporal", 80),
    ("up_blocks.2.motion_modules.0.transformer_blocks.0.attn2", "temporal", 80),
    ("up_blocks.2.attentions.1.transformer_blocks.0.attn1", "spatial_self", 80),
    ("up_blocks.2.attentions.1.transformer_blocks.0.attn2", "cross", 80),
    ("up_blocks.2.motion_modules.1.transformer_blocks.0.attn1", "temporal", 80),
    ("up_blocks.2.motion_modules.1.transformer_blocks.0.attn2", "temporal", 80),
    ("up_blocks.2.attentions.2.transformer_blocks.0.attn1", "spatial_self", 80),
    ("up_blocks.2.attentions.2.transformer_blocks.0.attn2", "cross", 80),
    ("up_blocks.2.motion_modules.2.transformer_blocks.0.attn1", "temporal", 80),
    ("up_blocks.2.motion_modules.2.transformer_blocks.0.attn2", "temporal", 80),
    ("up_blocks.3.attentions.0.transformer_blocks.0.attn1", "spatial_self", 40),
    ("up_blocks.3.attentions.0.transformer_blocks.0.attn2", "cross", 40),
    ("up_blocks.3.motion_modules.0.transformer_blocks.0.attn1", "temporal", 40),
    ("up_blocks.3.motion_modules.0.transformer_blocks.0.attn2", "temporal", 40),
    ("up_blocks.3.attentions.1.transformer_blocks.0.attn1", "spatial_self", 40),
    ("up_blocks.3.attentions.1.transformer_blocks.0.attn2", "cross", 40),
    ("up_blocks.3.motion_modules.1.transformer_blocks.0.attn1", "temporal", 40),
    ("up_blocks.3.motion_modules.1.transformer_blocks.0.attn2", "temporal", 40),
    ("up_blocks.3.attentions.2.transformer_blocks.0.attn1", "spatial_self", 40),
    ("up_blocks.3.attentions.2.transformer_blocks.0.attn2", "cross", 40),
    ("up_blocks.3.motion_modules.2.transformer_blocks.0.attn1", "temporal", 40),
    ("up_blocks.3.motion_modules.2.transformer_blocks.0.attn2", "temporal", 40),
]


def test_full_size_site_table_equals_appendix_a():
    config = UNetMotionConfig.from_unet2d(SD15_UNET, ADAPTER_V153)
    model = UNetMotionModel.abstract(config, dtype=jnp.bfloat16)
    table = model.site_table
    assert [(s.name, s.kind, s.head_dim) for s in table] == APPENDIX_A
    assert all(s.heads == 8 for s in table)
    assert len(table.select(kind="self")) == 56
    assert table[table.select(kind="spatial_self", index=[15])[0]].name == "up_blocks.3.attentions.2.transformer_blocks.0.attn1"
    params = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
    assert params == 1_276_658_564  # reference §3a


def test_v2_layout_has_58_self_sites():
    config = UNetMotionConfig.from_unet2d(SD15_UNET, {**ADAPTER_V153, "use_motion_mid_block": True})
    table = UNetMotionModel.abstract(config).site_table
    assert len(table.select(kind="self")) == 58
    assert "mid_block.motion_modules.0.transformer_blocks.0.attn2" in table.names


def test_recording_self_sites(micro):
    table = micro.model.site_table
    rewiring = ieadapt_jax.noop(table, 2)
    results = {}
    for backend in ("reference", "chunked"):
        forward, state = make_forward(micro.model, record="self", backend=backend)
        results[backend] = forward(state, *micro.jax_inputs(), rewiring)
    out, rec = results["chunked"]
    n_self = len(table.select(kind="self"))
    assert rec.entropy.shape == (n_self, 2)
    entropy = np.asarray(rec.entropy)
    assert np.all((entropy >= 0) & (entropy <= 1))
    for field in rec._fields:
        np.testing.assert_allclose(np.asarray(getattr(rec, field)), np.asarray(getattr(results["reference"][1], field)),
                                   atol=1e-5, rtol=1e-4, err_msg=field)
    np.testing.assert_allclose(np.asarray(out), micro.torch_forward(), atol=ATOL, rtol=0)


def test_bad_inputs_raise_clear_errors(micro):
    model = micro.model
    x, t, text = micro.jax_inputs()
    with pytest.raises(ValueError, match=r"\[B, F, H, W, C\]"):
        model(x[0], t, text)
    with pytest.raises(ValueError, match="channels in its last axis"):
        model(jnp.moveaxis(x, -1, 1), t, text)
    with pytest.raises(ValueError, match="once per video"):
        model(x, t, jnp.repeat(text, x.shape[1], axis=0))
    with pytest.raises(ValueError, match="timesteps"):
        model(x, jnp.array([1, 2, 3]), text)
    with pytest.raises(ValueError, match="multiples of"):
        model(x[:, :, :7], t, text)
    with pytest.raises(ieadapt_jax.RewiringError, match="rows"):
        model(x, t, text, ieadapt_jax.noop(model.site_table, 3))
    with pytest.raises(ieadapt_jax.RewiringError, match="sites"):
        model(x, t, text, ieadapt_jax.noop(len(model.site_table) + 1, 2))
