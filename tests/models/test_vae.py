"""SD VAE: parity with diffusers' AutoencoderKL (fp32) through the production loader; frame chunking."""
import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.convert.folders import load_vae, read_vae_config
from ieadapt_jax.models.vae import AutoencoderKLConfig

ATOL = 1e-4
TINY = dict(  # reference §6 vae_tiny: 4 levels, ch [8, 16, 16, 16], 2 layers, 4 groups
    block_out_channels=(8, 16, 16, 16),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    norm_num_groups=4,
    latent_channels=4,
    sample_size=32,
)
MICRO = dict(  # §6 vae_micro, with the optional parts switched off
    block_out_channels=(8, 16),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    layers_per_block=1,
    norm_num_groups=4,
    mid_block_add_attention=False,
    use_quant_conv=False,
    use_post_quant_conv=False,
)


def _save(path, config):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(**config).eval()
    with torch.no_grad():  # random non-trivial norms and biases
        for name, p in vae.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    vae.save_pretrained(path)
    return vae


def _nchw(x):
    return torch.as_tensor(np.array(x)).permute(0, 3, 1, 2)


def _nhwc(t):
    return t.permute(0, 2, 3, 1).numpy()


def _jitted(model):
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, images, latents):
        vae = nnx.merge(graphdef, state)
        posterior = vae.encode(images)
        return posterior.mean, posterior.logvar, vae.decode(latents)

    return lambda images, latents: run(state, images, latents)


@pytest.mark.parametrize("config, size", [(TINY, 32), (MICRO, 16)], ids=["tiny", "micro"])
def test_encode_decode_match_diffusers(tmp_path, monkeypatch, config, size):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    ref = _save(tmp_path / "vae", config)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    down = 2 ** (len(config["block_out_channels"]) - 1)
    latents = rng.standard_normal((2, size // down, size // down, 4)).astype(np.float32)
    with torch.no_grad():
        posterior = ref.encode(_nchw(images)).latent_dist
        decoded = ref.decode(_nchw(latents)).sample

    model = load_vae(tmp_path / "vae")
    mean, logvar, out = _jitted(model)(jnp.asarray(images), jnp.asarray(latents))
    assert mean.shape == (2, size // down, size // down, 4)
    np.testing.assert_allclose(mean, _nhwc(posterior.mean), atol=ATOL)
    np.testing.assert_allclose(logvar, _nhwc(posterior.logvar), atol=ATOL)
    np.testing.assert_allclose(out, _nhwc(decoded), atol=ATOL)
    expected_sites = ("encoder.mid_block.attentions.0",) if config.get("mid_block_add_attention", True) else ()
    assert model.encoder.site_table.names == expected_sites


def test_frame_chunks_equal_one_batch_and_odd_sizes(tmp_path):
    ref = _save(tmp_path / "vae", MICRO | {"mid_block_add_attention": True})
    model = load_vae(tmp_path / "vae", cache=False)
    rng = np.random.default_rng(1)
    latents = jnp.asarray(rng.standard_normal((5, 6, 5, 4)), jnp.float32)  # 5 frames, odd latent width
    whole = model.decode(latents)
    chunked = jax.jit(lambda z: model.decode_frames(z, chunk_size=2))(latents)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    frames = jnp.asarray(rng.uniform(-1, 1, (3, 17, 15, 3)), jnp.float32)  # odd sizes: pad (0,1,0,1)
    enc = model.encode_frames(frames, chunk_size=2)
    with torch.no_grad():
        ref_mean = _nhwc(ref.encode(_nchw(frames)).latent_dist.mean)
    assert enc.mean.shape == ref_mean.shape == (3, 8, 7, 4)
    np.testing.assert_allclose(enc.mean, ref_mean, atol=ATOL)
    sample = enc.sample(jax.random.key(0))
    assert sample.shape == enc.mean.shape and not np.allclose(sample, enc.mean)


def test_config_and_errors(tmp_path):
    _save(tmp_path / "vae", MICRO)
    cfg = read_vae_config(tmp_path / "vae")
    assert cfg.block_out_channels == (8, 16) and cfg.downscale == 2 and cfg.scaling_factor == 0.18215
    with pytest.raises(ValueError, match="block types"):
        AutoencoderKLConfig(down_block_types=("AttnDownEncoderBlock2D",))
    model = load_vae(tmp_path / "vae", cache=False)
    with pytest.raises(ValueError, match=r"channels-last"):
        model.encode(jnp.zeros((1, 3, 16, 16)))
    with pytest.raises(ValueError, match="chunk_size"):
        model.decode_frames(jnp.zeros((2, 8, 8, 4)), chunk_size=0)
    (tmp_path / "vae" / "config.json").write_text(
        (tmp_path / "vae" / "config.json").read_text().replace('"use_quant_conv": false', '"use_quant_conv": true')
    )
    with pytest.raises(ConversionError, match=r"(?s)diffusion_pytorch_model\.safetensors.*quant_conv\.kernel"):
        load_vae(tmp_path / "vae", cache=False)
