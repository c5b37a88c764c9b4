"""T5 encoder: parity with transformers' T5EncoderModel (fp32) through the production loader (convert.cogvideox)."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from ieadapt_jax.convert.cogvideox import load_t5_encoder
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.models.t5 import T5Config, relative_position_buckets
from safetensors.numpy import load_file, save_file
from transformers.models.t5.modeling_t5 import T5Attention

ATOL = 1e-4


def _save_tiny(path, sharded=False, **overrides):
    kw = dict(vocab_size=300, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=37, feed_forward_proj="gated-gelu",
              relative_attention_num_buckets=8, relative_attention_max_distance=16)
    kw.update(overrides)
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(transformers.T5Config(**kw)).eval()
    with torch.no_grad():
        for p in model.parameters():  # unit norms would hide a norm that is skipped
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(path, **({"max_shard_size": "20KB"} if sharded else {}))
    return model


def _ids(batch=2, length=40, seed=0):
    return np.random.default_rng(seed).integers(0, 300, size=(batch, length))


def _reference(model, ids, mask=None):
    with torch.no_grad():
        out = model(torch.as_tensor(ids), attention_mask=None if mask is None else torch.as_tensor(mask))
    return out.last_hidden_state.numpy()


@pytest.mark.parametrize("length", [7, 40, 300])
@pytest.mark.parametrize("buckets,max_distance", [(32, 128), (8, 16)])
def test_relative_position_buckets_match_transformers(length, buckets, max_distance):
    relative = torch.arange(length)[None, :] - torch.arange(length)[:, None]
    reference = T5Attention._relative_position_bucket(relative, True, buckets, max_distance).numpy()
    np.testing.assert_array_equal(relative_position_buckets(length, length, buckets, max_distance), reference)


@pytest.mark.parametrize("feed_forward", ["gated-gelu", "relu"])
def test_hidden_states_match_transformers(tmp_path, monkeypatch, feed_forward):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    reference = _save_tiny(tmp_path / "t5", feed_forward_proj=feed_forward, num_layers=3)
    model = load_t5_encoder(tmp_path / "t5")
    assert model.config.is_gated_act == (feed_forward == "gated-gelu")
    ids = _ids()
    out = model(jnp.asarray(ids))
    np.testing.assert_allclose(out, _reference(reference, ids), atol=ATOL)
    np.testing.assert_allclose(model.prompt_embeds(jnp.asarray(ids)), out, atol=0)
    mask = (np.arange(40)[None, :] < np.array([[12], [40]])).astype(np.int64)
    np.testing.assert_allclose(model(jnp.asarray(ids), jnp.asarray(mask)), _reference(reference, ids, mask), atol=ATOL)
    cached = load_t5_encoder(tmp_path / "t5")  # second load: from the orbax cache
    np.testing.assert_allclose(cached(jnp.asarray(ids)), out, atol=0)


def test_sharded_checkpoint_and_tied_embedding(tmp_path):
    reference = _save_tiny(tmp_path / "t5", sharded=True)
    assert (tmp_path / "t5" / "model.safetensors.index.json").is_file()
    ids = _ids(length=12)
    expected = _reference(reference, ids)
    np.testing.assert_allclose(load_t5_encoder(tmp_path / "t5", cache=False)(jnp.asarray(ids)), expected, atol=ATOL)

    _save_tiny(tmp_path / "single")
    file = tmp_path / "single" / "model.safetensors"
    tensors = load_file(file)
    tied = dict(tensors, **{"encoder.embed_tokens.weight": tensors["shared.weight"]})  # both names, equal
    save_file(tied, file)
    np.testing.assert_allclose(load_t5_encoder(tmp_path / "single", cache=False)(jnp.asarray(ids)), expected, atol=ATOL)
    only_tied = {("encoder.embed_tokens.weight" if k == "shared.weight" else k): v for k, v in tensors.items()}
    save_file(only_tied, file)
    np.testing.assert_allclose(load_t5_encoder(tmp_path / "single", cache=False)(jnp.asarray(ids)), expected, atol=ATOL)
    tied["encoder.embed_tokens.weight"] = tied["encoder.embed_tokens.weight"] + 1
    save_file(tied, file)
    with pytest.raises(ConversionError, match="encoder.embed_tokens.weight.*differ"):
        load_t5_encoder(tmp_path / "single", cache=False)


def test_config_and_errors(tmp_path):
    with pytest.raises(ValueError, match="feed_forward_proj"):
        T5Config(feed_forward_proj="gated-swish")
    assert T5Config(feed_forward_proj="gated-gelu").dense_act_fn == "gelu_new"
    _save_tiny(tmp_path / "t5", num_layers=1)
    model = load_t5_encoder(tmp_path / "t5", cache=False)
    with pytest.raises(ValueError, match="clip_skip"):
        model.prompt_embeds(jnp.zeros((1, 4), jnp.int32), clip_skip=1)
    with pytest.raises(ValueError, match=r"input_ids must be \[B, L\]"):
        model(jnp.zeros((4,), jnp.int32))
    config = json.loads((tmp_path / "t5" / "config.json").read_text())
    config["num_layers"] = 2  # the weights hold one block
    (tmp_path / "t5" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match=r"(?s)model\.safetensors.*encoder\.block\.1\.layer\.0\.SelfAttention\.q\.kernel"):
        load_t5_encoder(tmp_path / "t5", cache=False)
    config["model_type"] = "bert"
    (tmp_path / "t5" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="model_type='bert'"):
        load_t5_encoder(tmp_path / "t5", cache=False)
