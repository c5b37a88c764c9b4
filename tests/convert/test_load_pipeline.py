"""ieadapt_jax.load_animatediff: a whole tiny pipeline snapshot written by diffusers, loaded back."""
import json
import shutil

import diffusers
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.models.clip_text import CLIPTextModel
from ieadapt_jax.models.unet_motion import UNetMotionModel
from ieadapt_jax.models.vae import AutoencoderKL

import ieadapt_jax
from support.tiny_diffusers import animatediff_parts

ATOL = 1e-4


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """A saved AnimateDiffPipeline (unet/ is a UNetMotionModel) and an SD-style one (UNet2DConditionModel
    in unet/, the adapter given separately)."""
    root = tmp_path_factory.mktemp("pipelines")
    parts = animatediff_parts()
    pipe = diffusers.AnimateDiffPipeline(**parts)
    pipe.save_pretrained(root / "animatediff")
    sd = diffusers.StableDiffusionPipeline(
        **{k: v for k, v in parts.items() if k != "motion_adapter"},
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    sd.save_pretrained(root / "sd15")
    parts["motion_adapter"].save_pretrained(root / "adapter")
    return root, pipe


def test_loads_every_component(snapshot, tmp_path, monkeypatch):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    root, pipe = snapshot
    loaded = ieadapt_jax.load_animatediff(root / "animatediff")
    assert isinstance(loaded.unet, UNetMotionModel)
    assert isinstance(loaded.vae, AutoencoderKL) and isinstance(loaded.text_encoder, CLIPTextModel)
    assert loaded.scheduler_config["_class_name"] == "DDIMScheduler"
    assert loaded.scheduler_config["steps_offset"] == 1

    ids = loaded.tokenizer(["a cat", "a dog!"], padding="max_length", max_length=77, return_tensors="np").input_ids
    ref_ids = pipe.tokenizer(["a cat", "a dog!"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    np.testing.assert_array_equal(ids, ref_ids.numpy())
    with torch.no_grad():
        ref_text = pipe.text_encoder(ref_ids).last_hidden_state.numpy()
        ref_conv_in = pipe.unet.conv_in.weight.permute(2, 3, 1, 0).numpy()
        ref_motion = pipe.unet.mid_block.motion_modules[0].proj_in.weight.T.numpy()
    np.testing.assert_allclose(loaded.text_encoder(jnp.asarray(ids)).last_hidden_state, ref_text, atol=ATOL)
    np.testing.assert_array_equal(loaded.unet.conv_in.kernel[...], ref_conv_in)
    np.testing.assert_array_equal(loaded.unet.mid_block.motion_modules[0].proj_in.kernel[...], ref_motion)

    latents = np.random.default_rng(0).standard_normal((2, 4, 4, 4)).astype(np.float32)
    with torch.no_grad():
        ref_img = pipe.vae.decode(torch.as_tensor(latents).permute(0, 3, 1, 2)).sample.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(loaded.vae.decode(jnp.asarray(latents)), ref_img, atol=ATOL)


def test_sd_snapshot_with_separate_motion_adapter(snapshot, tmp_path):
    root, pipe = snapshot
    with pytest.raises(ConversionError, match="also pass a MotionAdapter"):
        ieadapt_jax.load_animatediff(root / "sd15", cache=False)
    loaded = ieadapt_jax.load_animatediff(root / "sd15", root / "adapter", jnp.float16, cache=False)
    assert loaded.unet.conv_in.kernel[...].dtype == jnp.float16
    assert loaded.text_encoder.final_layer_norm.scale[...].dtype == jnp.float16
    assert loaded.vae.decoder.conv_out.kernel[...].dtype == jnp.float32  # force_upcast keeps the VAE in fp32
    with torch.no_grad():
        ref = pipe.unet.down_blocks[0].motion_modules[0].proj_out.weight.T.numpy()
    np.testing.assert_allclose(loaded.unet.down_blocks[0].motion_modules[0].proj_out.kernel[...], ref, atol=1e-3)


def test_bad_snapshots_are_explained(snapshot, tmp_path):
    root, _ = snapshot
    with pytest.raises(ConversionError, match="does not exist"):
        ieadapt_jax.load_animatediff(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="has no model_index.json"):
        ieadapt_jax.load_animatediff(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(root / "animatediff", broken)
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(ConversionError, match=r"component folder\(s\) \['tokenizer'\]"):
        ieadapt_jax.load_animatediff(broken, cache=False)
    shutil.copytree(root / "animatediff" / "tokenizer", broken / "tokenizer")
    (broken / "scheduler" / "scheduler_config.json").write_text("{not json")
    with pytest.raises(ConversionError, match=r"cannot parse .*scheduler_config\.json"):
        ieadapt_jax.load_animatediff(broken, cache=False)
    index = json.loads((broken / "model_index.json").read_text())
    index["vae"] = [None, None]
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ConversionError, match=r"\['vae'\]"):
        ieadapt_jax.load_animatediff(broken, cache=False)
