"""AutoencoderKLCogVideoX vs diffusers on a tiny random-weight VAE (CPU, fp32): frame chunks with the conv cache
and spatial tiling.

Main fixture: 3 levels of 8 channels (spatial factor 4, time factor 4: the first two levels compress time), latent 4,
GroupNorm groups 2, one resnet per block. 25 frames encode in diffusers' chunks 9 + 8 + 8 (the last two in one
``lax.scan``) to 3 + 2 + 2 = 7 latent frames; 7 latent frames decode in chunks 3 + 2 + 2 to 25 frames.
"""
import json

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from ieadapt_jax.convert.cogvideox import load_cogvideox_vae
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.models import AutoencoderKLCogVideoXConfig, Tiling

ATOL = 1e-4
BLOCKS = 3


def _build(folder, blocks: int, temporal_compression_ratio: int):
    """A random diffusers VAE (perturbed so zero biases and unit norms would show), saved; ours loaded from it."""
    torch.manual_seed(0)
    reference = diffusers.AutoencoderKLCogVideoX(
        block_out_channels=(8,) * blocks, down_block_types=("CogVideoXDownBlock3D",) * blocks,
        up_block_types=("CogVideoXUpBlock3D",) * blocks, latent_channels=4, norm_num_groups=2, layers_per_block=1,
        temporal_compression_ratio=temporal_compression_ratio, sample_height=32, sample_width=32,
    ).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    reference.save_pretrained(folder)
    return reference, load_cogvideox_vae(folder, cache=False)


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cvae") / "vae"
    reference, ours = _build(folder, BLOCKS, 4)
    return reference, ours, folder


def _torch(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3)))  # [B, T, H, W, C] -> [B, C, T, H, W]


def _numpy(t):
    return t.numpy().transpose(0, 2, 3, 4, 1)  # [B, C, T, H, W] -> [B, T, H, W, C]


def _reference(reference, x, z):
    with torch.no_grad():
        posterior = reference.encode(_torch(x)).latent_dist
        return _numpy(posterior.mean), _numpy(posterior.logvar), _numpy(reference.decode(_torch(z)).sample)


def test_chunked_encode_decode_match_diffusers(vae):
    reference, ours, _ = vae
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 25, 16, 16, 3)).astype(np.float32)
    z = rng.standard_normal((2, 7, 4, 4, 4)).astype(np.float32)
    mean, logvar, frames = _reference(reference, x, z)
    graphdef, state = nnx.split(ours)

    @jax.jit
    def run(state, x, z):
        model = nnx.merge(graphdef, state)
        return model.encode(x), model.decode(z)

    posterior, decoded = run(state, jnp.asarray(x), jnp.asarray(z))
    assert posterior.mean.shape == (2, 7, 4, 4, 4) and decoded.shape == (2, 25, 16, 16, 3)
    np.testing.assert_allclose(posterior.mean, mean, atol=ATOL)
    np.testing.assert_allclose(posterior.logvar, logvar, atol=ATOL)
    np.testing.assert_allclose(decoded, frames, atol=ATOL)


def test_tiled_encode_and_decode_match_diffusers(tmp_path):
    """A 2-level VAE (factor 2 in space and time). Encoding tiles 24 rows as 16 + 12 (stride 12, one column);
    decoding tiles 14 latent columns as 8 + 8 + 2 (stride 6; the two equal tiles share one lax.map)."""
    reference, ours = _build(tmp_path / "vae", 2, 2)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (1, 5, 24, 12, 3)).astype(np.float32)
    z = rng.standard_normal((1, 3, 6, 14, 4)).astype(np.float32)
    reference.enable_tiling(tile_sample_min_height=16, tile_sample_min_width=16, tile_overlap_factor_height=0.25,
                            tile_overlap_factor_width=0.25)
    mean, _, frames = _reference(reference, x, z)
    reference.disable_tiling()
    untiled_mean, _, untiled_frames = _reference(reference, x, z)
    assert min(np.abs(untiled_mean - mean).max(), np.abs(untiled_frames - frames).max()) > 1e-3  # tiles made a difference
    tiling = Tiling(16, 16, 0.25, 0.25)
    graphdef, state = nnx.split(ours)

    @jax.jit
    def run(state, x, z):
        model = nnx.merge(graphdef, state)
        return model.encode(x, tiling=tiling).mean, model.decode(z, tiling=tiling)

    tiled_mean, tiled_frames = run(state, jnp.asarray(x), jnp.asarray(z))
    np.testing.assert_allclose(tiled_mean, mean, atol=ATOL)
    np.testing.assert_allclose(tiled_frames, frames, atol=ATOL)


def test_config_errors(vae, tmp_path):
    _, ours, folder = vae
    with pytest.raises(ValueError, match="temporal_compression_ratio"):
        AutoencoderKLCogVideoXConfig(block_out_channels=(8, 8), down_block_types=("CogVideoXDownBlock3D",) * 2,
                                     up_block_types=("CogVideoXUpBlock3D",) * 2, temporal_compression_ratio=4)
    with pytest.raises(ValueError, match="use_quant_conv"):
        AutoencoderKLCogVideoXConfig(use_quant_conv=True)
    with pytest.raises(ValueError, match=r"latents must be \[B, T, H, W, 4\]"):
        ours.decode(jnp.zeros((1, 2, 4, 4, 3)))
    # diffusers would join these tiles into a 36x34 video (32x32 expected): tiles 12 px apart keep 14 and 13 px
    with pytest.raises(ValueError, match=r"not seamless for decoding.*advance \(12, 12\) pixels but keep \(14, 13\)"):
        ours.decode(jnp.zeros((1, 1, 8, 8, 4)), tiling=Tiling(16, 16))
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, _class_name="AutoencoderKL")))
    with pytest.raises(ConversionError, match="expected AutoencoderKLCogVideoX"):
        load_cogvideox_vae(tmp_path, cache=False)
