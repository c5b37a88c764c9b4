"""CLIP vision tower and CLIPModel: parity with transformers (fp32) through the production loader,
and CLIP image preprocessing parity with transformers' CLIPImageProcessor (Pillow backend)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.convert.folders import load_clip_model
from ieadapt_jax.models.clip_vision import CLIPConfig, CLIPModel
from support.metric_models import random_videos, save_tiny_clip

from ieadapt_jax.scoring import MetricError, clip_pixels

ATOL = 1e-4


def _features(out):
    """transformers 5 returns an output object from get_*_features; its pooler_output is the projection."""
    return (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()


def test_clip_model_matches_transformers(tmp_path, monkeypatch):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    ref, tok = save_tiny_clip(tmp_path / "clip")
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(3, 224, 224, 3)).astype(np.float32)
    tokens = tok(["a cat", "a dog!", "cat"], padding="max_length", max_length=77, return_tensors="np")
    with torch.no_grad():
        torch_pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        vision = ref.vision_model(torch_pixels)
        image = _features(ref.get_image_features(torch_pixels))
        text = _features(ref.get_text_features(torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"])))

    model = load_clip_model(tmp_path / "clip")
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, pixels, ids, mask):
        clip = nnx.merge(graphdef, state)
        out = clip.vision_model(pixels)
        return out.last_hidden_state, out.pooler_output, clip.get_image_features(pixels), clip.get_text_features(ids, mask)

    last, pooled, ours_image, ours_text = run(state, pixels, tokens["input_ids"], tokens["attention_mask"])
    np.testing.assert_allclose(last, vision.last_hidden_state.numpy(), atol=ATOL)
    np.testing.assert_allclose(pooled, vision.pooler_output.numpy(), atol=ATOL)
    np.testing.assert_allclose(ours_image, image, atol=ATOL)
    np.testing.assert_allclose(ours_text, text, atol=ATOL)
    np.testing.assert_allclose(model.logit_scale[...], ref.logit_scale.item(), atol=1e-6)


@pytest.mark.parametrize("size", [(512, 512), (480, 640), (300, 200), (160, 1000), (100, 90)])
def test_clip_pixels_match_clip_image_processor(size):
    frames = random_videos((1, 2, *size, 3), seed=size[0])[0]
    expected = transformers.CLIPImageProcessorPil()(list(frames), return_tensors="np")["pixel_values"]
    ours = jax.jit(clip_pixels)(jnp.asarray(frames))
    assert ours.shape == (2, 224, 224, 3)
    np.testing.assert_allclose(ours, expected.transpose(0, 2, 3, 1), atol=1e-5)


def test_presets():
    # transformers' CLIPConfig defaults are ViT-B/32
    assert CLIPConfig.vit_b_32() == CLIPConfig.from_dict(transformers.CLIPConfig().to_dict())
    # ViT-L/14 at full size: the same parameter count as transformers' module built from its values
    preset = CLIPConfig.vit_l_14()
    text = {k: getattr(preset.text, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")}
    vision = {k: getattr(preset.vision, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size")}
    with torch.device("meta"):
        ref = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=preset.projection_dim))
    ours = nnx.eval_shape(lambda: CLIPModel(preset, rngs=nnx.Rngs(0)))
    count = sum(int(np.prod(p.shape)) for _, p in nnx.to_flat_state(nnx.state(ours, nnx.Param)))
    assert count == sum(p.numel() for p in ref.parameters()) == 427_616_513


def test_clip_errors(tmp_path):
    save_tiny_clip(tmp_path / "clip", tokenizer=False)
    model = load_clip_model(tmp_path / "clip", cache=False)
    with pytest.raises(ValueError, match=r"must be \[N, 224, 224, 3\]"):
        model.get_image_features(jnp.zeros((1, 200, 200, 3)))
    with pytest.raises(MetricError, match="uint8"):
        clip_pixels(jnp.zeros((2, 64, 64, 3), jnp.float32))
    (tmp_path / "text").mkdir()
    transformers.CLIPTextModel(transformers.CLIPTextConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)).save_pretrained(tmp_path / "text")
    with pytest.raises(ValueError, match="not a CLIPModel config"):
        load_clip_model(tmp_path / "text", cache=False)
    with pytest.raises(ConversionError, match="does not exist"):
        load_clip_model(tmp_path / "missing", cache=False)
