"""text_to_video against diffusers' AnimateDiffPipeline and AnimateDiffPAGPipeline (same tiny weights, same noise)."""
import diffusers
import numpy as np
import pytest
import torch
from support.tiny_diffusers import animatediff_parts

import ieadapt_jax as ia
from ieadapt_jax.video_io import read_video, write_video

FRAMES, SIZE, STEPS, OMEGA = 4, 16, 3, 7.5
# Random tiny weights under CFG 7.5 drive the latents to |x| ~ 100, so the tolerance is relative to their scale:
# max |ours - diffusers| <= 1e-5 * max |diffusers| (float32 round-off; ~1e-3 absolute at that scale).
LATENT_SCALED_ATOL = 1e-5
VIDEO_ATOL = 2 / 255  # ours is rounded to uint8; diffusers' "np" output is float in [0, 1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A saved tiny AnimateDiffPipeline, our loaded copy, and shared initial noise."""
    root = tmp_path_factory.mktemp("t2v")
    parts = animatediff_parts()
    pipe = diffusers.AnimateDiffPipeline(**parts)
    pipe.save_pretrained(root / "snapshot")
    ours = ia.load_animatediff(root / "snapshot", cache=False)
    noise = np.random.default_rng(0).standard_normal((FRAMES, SIZE // 2, SIZE // 2, 4)).astype(np.float32)
    return parts, pipe, ours, noise


def _assert_latents_close(ours, reference):
    np.testing.assert_allclose(ours, reference, atol=LATENT_SCALED_ATOL * np.abs(reference).max())


def _diffusers(pipe, noise, output_type, **kwargs):
    latents = torch.from_numpy(noise.transpose(3, 0, 1, 2)[None].copy())  # [1, C, F, h, w]
    with torch.no_grad():
        out = pipe(
            "a cat", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=OMEGA,
            latents=latents, output_type=output_type, **kwargs,
        ).frames
    if output_type == "latent":
        return out[0].numpy().transpose(1, 2, 3, 0)  # [F, h, w, C]
    return out[0]  # [F, H, W, 3] float in [0, 1]


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "EulerDiscreteScheduler"])
def test_matches_animatediff_pipeline(setup, scheduler):
    _, pipe, ours, noise = setup
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    config = {**ours.scheduler_config, "_class_name": scheduler}
    result = ia.text_to_video(ours, "a cat", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=STEPS,
                              guidance_scale=OMEGA, latents=noise, scheduler_config=config, progress=False)
    _assert_latents_close(result.latents, _diffusers(pipe, noise, "latent"))
    if scheduler == "DDIMScheduler":
        video = _diffusers(pipe, noise, "np")
        np.testing.assert_allclose(result.video / 255.0, video, atol=VIDEO_ATOL)


def test_a_minus_i_preset_matches_animatediff_pag_pipeline(setup):
    parts, _, ours, noise = setup
    table = ours.unet.site_table
    sites = [table[table.select(kind="spatial_self")[0]].name, table[table.select(kind="temporal")[-1]].name]
    pag = diffusers.AnimateDiffPAGPipeline(**parts, pag_applied_layers=sites)
    pag.scheduler = diffusers.DDIMScheduler.from_config(pag.scheduler.config)
    reference = _diffusers(pag, noise, "latent", pag_scale=2.5)
    result = ia.text_to_video(ours, "a cat", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=STEPS,
                              guidance_scale=OMEGA, latents=noise, guidance=ia.Guidance("pag", scale=2.5, sites=sites),
                              progress=False)
    assert result.rows == (("uncond", "A"), ("cond", "A"), ("cond", "I"))  # PAG's [uncond, cond, perturbed]
    _assert_latents_close(result.latents, reference)


def test_generated_video_is_written_to_mp4(setup, tmp_path):
    _, _, ours, _ = setup
    result = ia.text_to_video(ours, "a dog", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=2,
                              guidance=ia.Guidance("U-I", scale=1.0), progress=False)
    path = write_video(tmp_path / "dog.mp4", result.video)
    back = read_video(path)
    assert back.shape == (FRAMES, SIZE, SIZE, 3)
