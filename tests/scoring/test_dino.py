"""DINO (transformers ViTModel) and DINOv2 (Dinov2Model): parity with transformers (fp32) through the
production loaders, both position-embedding interpolations, and loader dispatch and errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.convert.folders import load_vit
from ieadapt_jax.convert.metrics_weights import load_dino
from ieadapt_jax.models.dino import Dinov2Model, ViTModel
from support.metric_models import save_tiny_dino

ATOL = 1e-4


def _run(model, pixels, pos_interpolation):
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, pos_interpolation=pos_interpolation).last_hidden_state)
    return np.asarray(fn(state, jnp.asarray(pixels)))


def _torch(model, pixels, **kw):
    with torch.no_grad():
        return model(torch.from_numpy(pixels).permute(0, 3, 1, 2), **kw).last_hidden_state.numpy()


@pytest.mark.parametrize("kind", ["vit", "dinov2"])
def test_matches_transformers(tmp_path, kind):
    ref = save_tiny_dino(tmp_path / kind, kind=kind)
    model = load_dino(tmp_path / kind, cache=False)
    assert isinstance(model, ViTModel if kind == "vit" else Dinov2Model)
    rng = np.random.default_rng(0)
    square = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    wide = rng.normal(size=(2, 48, 80, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(model, square, "default"), _torch(ref, square), atol=ATOL)
    np.testing.assert_allclose(
        _run(model, wide, "transformers"), _torch(ref, wide, interpolate_pos_encoding=True), atol=ATOL
    )


def _dino_hub_interpolation(embeddings, pixels, height, width):
    """The original DINO code's interpolate_pos_encoding (facebookresearch/dino vision_transformer.py,
    which VBench loads through torch.hub), written with torch's own interpolate."""
    table = embeddings.position_embeddings
    n = table.shape[1] - 1
    h0, w0 = height // 16 + 0.1, width // 16 + 0.1
    side = int(math.sqrt(n))
    grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, scale_factor=(h0 / math.sqrt(n), w0 / math.sqrt(n)), mode="bicubic")
    assert grid.shape[-2:] == (int(h0), int(w0))
    return torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, table.shape[-1])], dim=1)


def test_dino_hub_position_interpolation(tmp_path, monkeypatch):
    ref = save_tiny_dino(tmp_path / "vit", kind="vit")
    monkeypatch.setattr(ref.embeddings, "interpolate_pos_encoding", lambda e, h, w: _dino_hub_interpolation(ref.embeddings, e, h, w))
    model = load_dino(tmp_path / "vit", cache=False)
    for size in ((48, 80), (96, 64)):
        pixels = np.random.default_rng(1).normal(size=(2, *size, 3)).astype(np.float32)
        expected = _torch(ref, pixels, interpolate_pos_encoding=True)
        np.testing.assert_allclose(_run(model, pixels, "dino"), expected, atol=ATOL)
        assert not np.allclose(_run(model, pixels, "transformers"), expected, atol=ATOL)  # the two rules differ


def test_errors(tmp_path):
    save_tiny_dino(tmp_path / "vit", kind="vit")
    model = load_vit(ViTModel, tmp_path / "vit", cache=False)
    with pytest.raises(ValueError, match="pos_interpolation='transformers' or 'dino'"):
        model(jnp.zeros((1, 48, 64, 3)))
    with pytest.raises(ValueError, match=r"pixel_values must be \[N, H, W, 3\]"):
        model(jnp.zeros((1, 3, 64, 64)))
    transformers.BertModel(transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, vocab_size=10)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ConversionError, match="model_type 'bert'"):
        load_dino(tmp_path / "bert")
    save_tiny_dino(tmp_path / "other", kind="vit", patch_size=8)  # same config file name, different patch grid
    (tmp_path / "other" / "config.json").write_text((tmp_path / "vit" / "config.json").read_text())
    with pytest.raises(ConversionError, match="patch_embeddings.projection.weight"):
        load_dino(tmp_path / "other", cache=False)
