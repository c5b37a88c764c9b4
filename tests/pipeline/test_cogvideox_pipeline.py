"""CogVideoX end to end: load_cogvideox on a saved tiny CogVideoXPipeline, text_to_video against diffusers
(CogVideoX DDIM and DPM, dynamic CFG), IE-Adapt guidance on joint attention sites.

The tiny snapshot (random weights): T5 (d_model 16, 2 blocks) over a 37-piece Unigram tokenizer, the
transformer of test_cogvideox_transformer (RoPE, 2 layers, 8 text tokens), a 3-level causal VAE (factor 4
in space and time). 9 frames of 32x32 pixels are 3 latent frames of 8x8. The parts come from
tests/support/tiny_diffusers.py, shared with the editing, readme and sweep tests.
"""
import math

import diffusers
import jax
import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_dpm_cogvideox
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.models import (
    AutoencoderKLCogVideoX,
    CogVideoXTransformer3DModel,
    T5EncoderModel,
)

import ieadapt_jax as ia
from support.tiny_diffusers import tiny_cogvideox_parts
from ieadapt_jax.guidance import dynamic_cfg_scales, guidance_rows_over_steps

FRAMES, SIZE, STEPS, OMEGA, TEXT = 9, 32, 3, 6.0, 8
LATENT = (3, 8, 8, 4)  # [f, h, w, C]
# v-prediction latents here stay O(1); float32 round-off of the two stacks (and the VAE) differ by ~1e-6.
LATENT_ATOL = 1e-4
VIDEO_ATOL = 2 / 255  # ours is rounded to uint8; diffusers' "np" output is float in [0, 1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A saved tiny CogVideoXPipeline, our loaded copy, and shared initial noise [f, h, w, C]."""
    root = tmp_path_factory.mktemp("cogvideox") / "snapshot"
    pipe = diffusers.CogVideoXPipeline(**tiny_cogvideox_parts())
    pipe.save_pretrained(root)
    ours = ia.load_cogvideox(root, cache=False)
    noise = np.random.default_rng(0).standard_normal(LATENT).astype(np.float32)
    return pipe, ours, noise, root


def _diffusers(pipe, noise, output_type, **kwargs):
    latents = torch.from_numpy(noise.transpose(0, 3, 1, 2)[None].copy())  # [1, f, C, h, w]
    with torch.no_grad():
        out = pipe("a cat runs", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=STEPS,
                   guidance_scale=OMEGA, latents=latents, output_type=output_type, max_sequence_length=TEXT, **kwargs).frames
    if output_type == "latent":
        return out[0].numpy().transpose(0, 2, 3, 1)  # [f, C, h, w] -> [f, h, w, C]
    return out[0]  # [F, H, W, 3] float in [0, 1]


def _ours(components, noise, **kwargs):
    return ia.text_to_video(components, "a cat runs", num_frames=FRAMES, height=SIZE, width=SIZE,
                            num_inference_steps=STEPS, guidance_scale=OMEGA, latents=noise, progress=False, **kwargs)


def test_load_cogvideox_snapshot(setup, tmp_path):
    _, ours, _, root = setup
    assert isinstance(ours.transformer, CogVideoXTransformer3DModel) and ours.denoiser is ours.transformer
    assert isinstance(ours.vae, AutoencoderKLCogVideoX) and isinstance(ours.text_encoder, T5EncoderModel)
    assert ours.tokenizer.model_max_length == TEXT
    assert ours.scheduler_config["_class_name"] == "CogVideoXDDIMScheduler"
    assert [s.name for s in ours.denoiser.site_table] == ["transformer_blocks.0.attn1", "transformer_blocks.1.attn1"]
    (tmp_path / "model_index.json").write_text((root / "model_index.json").read_text())
    with pytest.raises(ConversionError, match=r"lacks the pipeline component folder\(s\) \['transformer'"):
        ia.load_cogvideox(tmp_path, cache=False)


def test_text_to_video_matches_cogvideox_pipeline_ddim(setup):
    pipe, ours, noise, _ = setup
    result = _ours(ours, noise)
    assert result.rows == (("uncond", "A"), ("cond", "A")) and result.video.shape == (FRAMES, SIZE, SIZE, 3)
    np.testing.assert_allclose(result.latents, _diffusers(pipe, noise, "latent"), atol=LATENT_ATOL)
    np.testing.assert_allclose(result.video / 255.0, _diffusers(pipe, noise, "np"), atol=VIDEO_ATOL)


def test_text_to_video_matches_cogvideox_pipeline_dpm_with_dynamic_cfg(setup, monkeypatch):
    """DPM draws noise every step; diffusers is fed the draws our loop makes from the same seed (the last draw of a
    step is the one its update uses: first order draws once, second order twice)."""
    pipe, ours, noise, _ = setup
    seed = 3
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1), STEPS)  # what text_to_video / sample use
    draws = [torch.from_numpy(np.asarray(jax.random.normal(k, (1,) + LATENT)).transpose(0, 1, 4, 2, 3).copy()) for k in keys]
    pipe.scheduler = diffusers.CogVideoXDPMScheduler.from_config(pipe.scheduler.config)
    step, counter = pipe.scheduler.step, [-1]

    def counted_step(*args, **kwargs):
        counter[0] += 1
        return step(*args, **kwargs)

    monkeypatch.setattr(pipe.scheduler, "step", counted_step)
    monkeypatch.setattr(scheduling_dpm_cogvideox, "randn_tensor", lambda shape, **kw: draws[counter[0]].clone())
    reference = _diffusers(pipe, noise, "latent", use_dynamic_cfg=True)
    assert counter[0] == STEPS - 1
    config = dict(ours.scheduler_config, _class_name="CogVideoXDPMScheduler")
    result = _ours(ours, noise, scheduler_config=config, seed=seed, use_dynamic_cfg=True, decode=False)
    assert result.weights.shape == (STEPS, 2)
    np.testing.assert_allclose(result.latents, reference, atol=LATENT_ATOL)


def test_ie_adapt_guidance_on_joint_sites(setup):
    _, ours, noise, _ = setup
    result = _ours(ours, noise, guidance=ia.Guidance("U-I", scale=1.0), record="joint", decode=False)
    assert result.rows == (("uncond", "A"), ("cond", "A"), ("cond", "U"), ("cond", "I"))
    profile = result.entropy_profile
    assert result.sites == (ours.denoiser.site_table[int(np.argmax(profile))].name,)  # Eq. 3: the max-entropy joint site
    assert result.records.entropy.shape == (STEPS, 2, 4) and result.record_sites == ours.denoiser.site_table.names
    entropy = np.asarray(result.records.entropy)
    assert np.all((entropy > 0) & (entropy <= 1))
    plain = _ours(ours, noise, decode=False)
    assert np.abs(result.latents - plain.latents).max() > 1e-3


def test_dynamic_cfg_weights_and_errors(setup):
    _, ours, noise, _ = setup
    timesteps = np.array([999, 666, 333])
    expected = [1 + 6.0 * (1 - math.cos(math.pi * ((3 - t) / 3) ** 5.0)) / 2 for t in timesteps]
    np.testing.assert_allclose(dynamic_cfg_scales(timesteps, 6.0), expected, rtol=1e-6)
    # U-A with λ = ω drops ε(c,A) at ω but needs it at any other ω: the rows are the union over steps.
    rows, weights = guidance_rows_over_steps("U-A", [2.0, 3.0], lam=2.0)
    assert rows == (("uncond", "A"), ("cond", "U"), ("cond", "A"))
    np.testing.assert_allclose(weights, [[-1.0, 2.0, 0.0], [-2.0, 2.0, 1.0]])
    with pytest.raises(ia.PipelineError, match="use_dynamic_cfg needs guidance_scale > 1"):
        ia.text_to_video(ours, "a cat", num_frames=FRAMES, height=SIZE, width=SIZE, guidance_scale=1.0,
                         use_dynamic_cfg=True, latents=noise, progress=False)
    with pytest.raises(ia.PipelineError, match="multiples of 8 .VAE factor 4 x denoiser downsampling 2"):
        ia.text_to_video(ours, "a cat", num_frames=FRAMES, height=20, width=SIZE, progress=False)
    with pytest.raises(ia.PipelineError, match="at most 8"):
        ia.text_to_video(ours, "a cat runs on the grass a dog", num_frames=FRAMES, height=SIZE, width=SIZE, progress=False)
