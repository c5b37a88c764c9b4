"""convert.animatediff: every accepted checkpoint layout loads to the same model; strict errors; the cache.

Uses the unet_motion_micro fixture (reference §6; mid-block motion module on, i.e. the v2 layout) so the
original-format round trip covers mid-block keys too.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from ieadapt_jax.convert.animatediff import (  # noqa: E402
    from_original_motion_keys,
    infer_adapter_config,
    load_unet_motion,
    to_original_motion_keys,
)
from ieadapt_jax.convert import ConversionError  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from support.tiny_diffusers import build_fixture  # noqa: E402

from ieadapt_jax.core import make_forward


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Folders and files of the micro fixture: unet/, adapter/, motion/ (UNetMotionModel), original .ckpt/.safetensors."""
    root = tmp_path_factory.mktemp("animatediff")
    unet, adapter, (sample_shape, text_shape) = build_fixture("micro")
    unet.save_pretrained(root / "unet")
    adapter.save_pretrained(root / "adapter")
    diffusers.UNetMotionModel.from_unet2d(unet, adapter).save_pretrained(root / "motion")
    state = {k: v.numpy() for k, v in adapter.state_dict().items()}
    original = to_original_motion_keys(state, max_seq_length=adapter.config.motion_max_seq_length)
    save_file(original, str(root / "mm_original.safetensors"))
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in original.items()}, root / "mm_original.ckpt")
    rng = np.random.default_rng(0)
    inputs = (jnp.asarray(rng.standard_normal((sample_shape[0],) + sample_shape[2:] + (sample_shape[1],)), jnp.float32),
              jnp.asarray([3, 700]), jnp.asarray(rng.standard_normal(text_shape), jnp.float32))
    return root, adapter, inputs


def _params(model) -> dict:
    return {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _assert_same_params(a, b):
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=str(k))


def test_all_layouts_give_the_same_model(saved, tmp_path):
    root, _, inputs = saved
    reference = load_unet_motion(root / "unet", root / "adapter", cache=False)
    for source in (dict(unet_dir=root / "motion"),
                   dict(unet_dir=root / "unet", motion_adapter=root / "mm_original.safetensors", motion_num_attention_heads=2),
                   dict(unet_dir=root / "unet", motion_adapter=root / "mm_original.ckpt", motion_num_attention_heads=2)):
        model = load_unet_motion(**source, cache=False)
        assert model.config == reference.config
        _assert_same_params(model, reference)
    cached = load_unet_motion(root / "motion")  # the orbax cache written by the first load
    _assert_same_params(cached, reference)
    forward, state = make_forward(reference)
    out, _ = forward(state, *inputs)
    assert np.isfinite(np.asarray(out)).all()


def test_original_key_mapping_round_trip(saved):
    root, adapter, _ = saved
    state = {k: v.numpy() for k, v in adapter.state_dict().items()}
    original = load_file(str(root / "mm_original.safetensors"))
    assert any(".temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe" in k for k in original)
    assert any(k.startswith("mid_block.motion_modules.0.temporal_transformer.") for k in original)
    assert not any(".attn1." in k or ".norm1." in k for k in original)
    back = from_original_motion_keys(original)
    assert set(back) == {k for k in state if not k.endswith("pos_embed.pe")}
    for k, v in back.items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    for k in state:
        if k.endswith("pos_embed.pe"):  # the recomputed buffer equals diffusers' stored one
            pe = original[k.replace("transformer_blocks.0.pos_embed.pe", "temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe")]
            np.testing.assert_allclose(pe, state[k], atol=1e-6)
    inferred = infer_adapter_config(original, motion_num_attention_heads=2)
    for key in ("block_out_channels", "use_motion_mid_block", "motion_max_seq_length", "motion_num_attention_heads"):
        assert inferred[key] == adapter.config[key] or list(inferred[key]) == list(adapter.config[key]), key
    assert inferred["motion_layers_per_block"] == [1, 1]


def test_cache_reuses_converted_parameters(saved, tmp_path):
    root, _, _ = saved
    first = load_unet_motion(root / "unet", root / "adapter", cache_dir=tmp_path)
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert len(entries) == 1
    second = load_unet_motion(root / "unet", root / "adapter", cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == entries
    _assert_same_params(first, second)
    bf16 = load_unet_motion(root / "unet", root / "adapter", cache_dir=tmp_path, dtype=jnp.bfloat16)
    assert len(list(tmp_path.iterdir())) == 2  # another dtype is another entry
    assert all(v.dtype == jnp.bfloat16 for v in jax.tree_util.tree_leaves(nnx.state(bf16, nnx.Param)))


def test_errors_name_the_problem(saved, tmp_path):
    root, _, _ = saved
    with pytest.raises(ConversionError, match="also pass a MotionAdapter"):
        load_unet_motion(root / "unet", cache=False)
    with pytest.raises(ConversionError, match="already has motion modules"):
        load_unet_motion(root / "motion", root / "adapter", cache=False)
    with pytest.raises(ConversionError, match="_class_name"):
        load_unet_motion(root / "adapter", cache=False)
    with pytest.raises(ConversionError, match="does not exist"):
        load_unet_motion(tmp_path / "missing", cache=False)

    broken = load_file(str(root / "mm_original.safetensors"))
    dropped = "down_blocks.1.motion_modules.0.temporal_transformer.proj_out.bias"
    del broken[dropped]
    save_file(broken, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ConversionError, match=r"down_blocks\.1\.motion_modules\.0\.proj_out\.bias"):
        load_unet_motion(root / "unet", tmp_path / "broken.safetensors", cache=False)

    save_file({"conv_in.weight": np.zeros((1,), np.float32)}, str(tmp_path / "not_motion.safetensors"))
    with pytest.raises(ConversionError, match="not a motion-module key"):
        load_unet_motion(root / "unet", tmp_path / "not_motion.safetensors", cache=False)

    wide = diffusers.MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=2,
                                   motion_norm_num_groups=8)
    wide.save_pretrained(tmp_path / "wide")
    with pytest.raises(ConversionError, match="incompatible motion adapter"):
        load_unet_motion(root / "unet", tmp_path / "wide", cache=False)
