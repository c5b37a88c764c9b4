"""Entropy-guided editing on a tiny random CogVideoX (joint text+video attention, causal 3D VAE, v-prediction):
Algorithm 1 at joint sites, real videos through VAE encoding and DDIM inversion with v-prediction, the presets
that cannot apply, and ``python -m ieadapt_jax.edit --model cogvideox``.

The snapshot is test_cogvideox_pipeline's (CogVideoX DDIM, v-prediction, zero terminal SNR; 2 joint sites; 9
frames of 32x32 pixels are 3 latent frames of 8x8).
"""
import json

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from support.tiny_diffusers import tiny_cogvideox_parts

import ieadapt_jax as ia
from ieadapt_jax.edit import OUTPUTS, main
from ieadapt_jax.editing import (
    EditError,
    edit,
    encode_text,
    encode_video,
    word_positions,
)
from ieadapt_jax.outputs import MARKER
from ieadapt_jax.sampling import make_plan, sample
from ieadapt_jax.schedulers import make_schedule
from ieadapt_jax.video_io import read_video, write_video

SOURCE, TARGET = "a cat runs", "a dog runs"
SIZE = dict(num_frames=9, height=32, width=32)
RUN = dict(num_inference_steps=2, guidance_scale=6.0, progress=False)
CLI_SIZE = ["--frames", "9", "--height", "32", "--width", "32", "--steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("cogvideox") / "snapshot"
    diffusers.CogVideoXPipeline(**tiny_cogvideox_parts()).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def cog(snapshot):
    return ia.load_cogvideox(snapshot, cache=False)


@pytest.fixture(scope="module")
def clip():
    """A 9-frame 32x32 video: a bright square moving right over a dark gradient."""
    frames = np.zeros((9, 32, 32, 3), np.uint8)
    frames[..., 2] = np.linspace(20, 90, 32, dtype=np.uint8)[None, :, None]
    for i in range(9):
        frames[i, 10:20, 2 + 2 * i:12 + 2 * i] = (230, 200, 40)
    return frames


def test_generated_edit_injects_source_maps_at_the_lowest_entropy_joint_site(cog):
    """Rows [φ, c_src, φ, c_tgt] from one noise: the source is the plain generation, the target takes Q and K of the
    source rows at the joint site of lowest entropy (ρ = 0.5 of 2 sites)."""
    result = edit(cog, SOURCE, TARGET, **SIZE, **RUN)
    table = cog.denoiser.site_table
    assert np.all(np.isfinite(result.entropy)) and len(result.site_positions) == 1
    assert result.site_positions == (int(np.argmin(result.entropy)),) and table[result.site_positions[0]].kind == "joint"
    assert result.config["scheduler"] == "CogVideoXDDIMScheduler on CogVideoXDDIMScheduler's noise schedule"
    assert result.source_video.shape == result.edited_video.shape == (9, 32, 32, 3)
    reference = ia.text_to_video(cog, SOURCE, seed=0, decode=False, **SIZE, **RUN)
    np.testing.assert_allclose(result.source_latents, reference.latents, atol=2e-4)  # 4 rows vs 2 per forward

    schedule = make_schedule(cog.scheduler_config, 2)
    uncond, (src, tgt) = encode_text(cog, [SOURCE, TARGET])
    rw = ia.inject(ia.noop(table, 4), table, list(result.site_positions), src=[0, 1], dst=[2, 3], what="qk")
    noise = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 4))
    out = sample(cog.denoiser, make_plan(cog.denoiser, [0, 0, 1, 1], progress=False), schedule,
                 jnp.stack([noise, noise]), jnp.stack([uncond, src, uncond, tgt]), [[-5, 6, 0, 0], [0, 0, -5, 6]], rw)
    np.testing.assert_allclose(result.edited_latents, out.latents[1], atol=1e-5)
    free = ia.text_to_video(cog, TARGET, seed=0, decode=False, **SIZE, **RUN)
    assert np.abs(result.edited_latents - free.latents).max() > 1e-3  # the injection changed the target


def test_real_video_inverts_with_v_prediction_and_the_driven_source_is_exact(cog, clip):
    """VAE-encode (3D, frame-chunked), invert with v-prediction through the sampling loop, edit; the source rows
    follow the stored trajectory, so the source's latents are the input's and its video the VAE round trip. A pixel
    mask [9, H, W] is pooled as the VAE packs frames: frame 0 alone, then frames 1-4 and 5-8."""
    mask = np.zeros((9, 32, 32), np.float32)
    mask[1:5, :, 16:] = 1.0
    mask[5:7] = 1.0
    result = edit(cog, SOURCE, TARGET, video=clip, profile="run", mask=mask, num_inference_steps=3, guidance_scale=6.0,
                  progress=False)
    expected = np.zeros((3, 8, 8), np.float32)
    expected[1, :, 4:] = 1.0
    expected[2] = 0.5
    np.testing.assert_array_equal(result.mask, expected)
    x0 = encode_video(cog.vae, clip)  # [3, 8, 8, 4]
    np.testing.assert_array_equal(result.source_latents, x0)
    assert result.metrics["reconstruction_psnr"] == result.metrics["vae_psnr"] and np.isfinite(result.metrics["vae_psnr"])
    assert result.edited_video.shape == clip.shape and np.all(np.isfinite(result.entropy))
    assert np.abs(result.edited_latents - x0).max() > 1e-3
    with pytest.raises(EditError, match=r"needs 4k \+ 1 frames; got 8: use 5 \(--frames 5\)"):
        edit(cog, SOURCE, TARGET, video=clip[:8], **RUN)


def test_dynamic_cfg_gives_each_video_one_guidance_weight_per_step(cog):
    """With use_dynamic_cfg the source is text_to_video's dynamic-CFG generation; ω ≤ 1 is refused."""
    result = edit(cog, SOURCE, TARGET, use_dynamic_cfg=True, **SIZE, **RUN)
    reference = ia.text_to_video(cog, SOURCE, seed=0, decode=False, use_dynamic_cfg=True, **SIZE, **RUN)
    np.testing.assert_allclose(result.source_latents, reference.latents, atol=2e-4)
    plain = ia.text_to_video(cog, SOURCE, seed=0, decode=False, **SIZE, **RUN)
    assert np.abs(reference.latents - plain.latents).max() > 1e-3 and result.config["use_dynamic_cfg"]
    with pytest.raises(EditError, match="dynamic CFG needs a guidance scale above 1"):
        edit(cog, SOURCE, TARGET, use_dynamic_cfg=True, **SIZE, **{**RUN, "guidance_scale": 1.0})


def test_word_mask_from_t5_tokens_and_a_run_profile(cog):
    """T5 adds only an end marker, so "cat" is token 1 of "a cat runs"; the word-influence mask ablates it in joint
    attention's text tokens and comes out per latent frame; the run profile averages every joint site's entropy."""
    assert word_positions(cog.tokenizer, SOURCE, "cat runs") == [1, 2]
    with pytest.raises(EditError, match="mask word 'dog' is not in the source prompt"):
        word_positions(cog.tokenizer, SOURCE, "dog")
    result = edit(cog, SOURCE, TARGET, mask_words="cat", profile="run", **SIZE, **RUN)
    assert result.mask.shape == (3, 8, 8) and set(np.unique(result.mask)) <= {0.0, 1.0} and result.mask.max() == 1.0
    assert result.config["mask"] == "words" and np.all(np.isfinite(result.entropy))


@pytest.mark.parametrize("method, message", [
    ("p2p", r"method 'p2p' injects the source's cross-attention maps .* no cross-attention sites: its text and video "
            r"tokens share joint self-attention sites"),
    ("tokenflow", r"method 'tokenflow' injects at fixed UNet decoder sites .* no up blocks \(a joint-attention DiT"),
])
def test_presets_without_their_sites_are_clear_errors(cog, method, message):
    with pytest.raises(EditError, match=message):
        edit(cog, SOURCE, TARGET, method=method, **SIZE, **RUN)


def test_cli_edits_a_real_video_with_a_mask_and_reports_joint_sites(snapshot, clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    write_video(tmp_path / "clip.gif", clip)
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    argv = ["--model", "cogvideox", "--pretrained", str(snapshot), "--source", SOURCE, "--target", TARGET,
            "--video", str(tmp_path / "clip.gif"), "--mask", str(tmp_path / "mask.png"), "--method", "kv",
            "--dtype", "bfloat16", "--dynamic-cfg", *CLI_SIZE]
    assert main(argv + ["--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted((*OUTPUTS, MARKER))  # the marker: this edit made out
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["kind"] == "cogvideox" and report["config"]["guidance_scale"] == 6.0
    assert report["config"]["use_dynamic_cfg"]
    assert report["config"]["real_video"] and report["config"]["mask"] == "given" and report["config"]["tensors"] == "kv"
    assert [s["kind"] for s in report["entropy"]] == ["joint", "joint"] and len(report["chosen_sites"]) == 1
    assert report["chosen_sites"][0]["name"].startswith("transformer_blocks.")
    assert report["metrics"]["reconstruction_psnr"] == report["metrics"]["vae_psnr"]  # bf16 too: latents are float32
    assert read_video(out / "edited.mp4").shape == (9, 32, 32, 3)

    def fails(extra, message):
        with pytest.raises(SystemExit) as stop:
            raise SystemExit(main(extra + ["--out", str(tmp_path / "bad")]))
        assert stop.value.code == 2 and message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]

    fails(["--model", "cogvideox", "--source", SOURCE, "--target", TARGET], "--model cogvideox needs --pretrained DIR")
    fails(argv + ["--frames", "8"], "--model cogvideox reads 4k + 1 frames of --video")
    fails(argv + ["--method", "p2p"], "method 'p2p' injects the source's cross-attention maps")
    fails(argv + ["--motion-adapter", str(snapshot)], "--motion-adapter goes with --model animatediff")
    fails(argv + ["--height", "20"], "height and width must be positive multiples of 8")  # VAE 4 x patch 2
