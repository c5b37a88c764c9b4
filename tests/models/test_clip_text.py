"""CLIP text encoder: parity with transformers' CLIPTextModel (fp32) through the production loader."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from ieadapt_jax.convert import ConversionError, read_model_config
from ieadapt_jax.convert.folders import load_clip_text
from ieadapt_jax.models.clip_text import CLIPTextConfig

EOS = 999
ATOL = 1e-4


def _save_tiny(path, **overrides):
    kw = dict(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        eos_token_id=EOS,
    )
    kw.update(overrides)
    torch.manual_seed(0)
    model = transformers.CLIPTextModel(transformers.CLIPTextConfig(**kw)).eval()
    model.save_pretrained(path)
    return model


def _ids(batch=2, length=77, eos_at=(5, 76), seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, EOS, size=(batch, length))
    for b, pos in enumerate(eos_at):
        ids[b, pos:] = EOS  # padded with the EOS id, as the SD tokenizer does
    return ids


def _torch_outputs(model, ids, mask=None):
    with torch.no_grad():
        out = model(
            torch.as_tensor(ids),
            attention_mask=None if mask is None else torch.as_tensor(mask),
            output_hidden_states=True,
        )
    return out.last_hidden_state.numpy(), out.pooler_output.numpy(), [h.numpy() for h in out.hidden_states]


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_hidden_states_match_transformers(tmp_path, monkeypatch, act):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    ref = _save_tiny(tmp_path / "clip", hidden_act=act)
    ids = _ids()
    last, pooled, hidden = _torch_outputs(ref, ids)

    model = load_clip_text(tmp_path / "clip")
    graphdef, state = nnx.split(model)

    @jax.jit
    def encode(state, ids):
        return nnx.merge(graphdef, state)(ids)

    out = encode(state, jnp.asarray(ids, jnp.int32))
    assert len(out.hidden_states) == len(hidden) == 4
    np.testing.assert_allclose(out.last_hidden_state, last, atol=ATOL)
    np.testing.assert_allclose(out.pooler_output, pooled, atol=ATOL)
    np.testing.assert_allclose(out.hidden_states[-2], hidden[-2], atol=ATOL)  # penultimate (clip_skip=1)
    for ours, theirs in zip(out.hidden_states, hidden):
        np.testing.assert_allclose(ours, theirs, atol=ATOL)
    # clip_skip as diffusers applies it: hidden_states[-(clip_skip + 1)] through final_layer_norm
    with torch.no_grad():
        ref_skip = ref.final_layer_norm(torch.as_tensor(hidden[-2])).numpy()
    np.testing.assert_allclose(model.prompt_embeds(jnp.asarray(ids), clip_skip=1), ref_skip, atol=ATOL)
    np.testing.assert_allclose(model.prompt_embeds(jnp.asarray(ids)), last, atol=ATOL)
    with pytest.raises(ValueError, match="clip_skip"):
        model.prompt_embeds(jnp.asarray(ids), clip_skip=3)


def test_padding_mask_and_legacy_eos(tmp_path, monkeypatch):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    ref = _save_tiny(tmp_path / "clip", eos_token_id=2, num_hidden_layers=1)
    ids = _ids(length=16, eos_at=(3, 9), seed=1)
    mask = (np.arange(16)[None, :] < np.array([[5], [12]])).astype(np.int64)
    last, pooled, _ = _torch_outputs(ref, ids, mask)
    model = load_clip_text(tmp_path / "clip", cache=False)
    out = model(jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_allclose(out.last_hidden_state, last, atol=ATOL)
    np.testing.assert_allclose(out.pooler_output, pooled, atol=ATOL)  # legacy rule: argmax of ids


def test_checkpoint_keys_with_text_model_prefix(tmp_path):
    """Older transformers wrote ``text_model.``-prefixed keys and a position_ids buffer."""
    from safetensors.numpy import load_file, save_file

    ref = _save_tiny(tmp_path / "clip", num_hidden_layers=1)
    tensors = load_file(tmp_path / "clip" / "model.safetensors")
    legacy = {("text_model." + k if not k.startswith("text_model.") else k): v for k, v in tensors.items()}
    legacy["text_model.embeddings.position_ids"] = np.arange(77)[None]
    save_file(legacy, tmp_path / "clip" / "model.safetensors")
    model = load_clip_text(tmp_path / "clip", cache=False)
    ids = _ids(length=77)
    np.testing.assert_allclose(model(jnp.asarray(ids)).last_hidden_state, _torch_outputs(ref, ids)[0], atol=ATOL)


def test_config_and_errors(tmp_path):
    _save_tiny(tmp_path / "clip", num_hidden_layers=1)
    model = load_clip_text(tmp_path / "clip", cache=False)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        model(jnp.zeros((1, 78), jnp.int32))
    cfg = read_model_config(CLIPTextConfig.from_dict, tmp_path / "clip", "CLIPTextModel")
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim, cfg.eos_token_id) == (32, 4, 8, EOS)
    with pytest.raises(ValueError, match="hidden_act"):
        CLIPTextConfig(hidden_act="relu6")
    config = json.loads((tmp_path / "clip" / "config.json").read_text())
    config["num_hidden_layers"] = 2  # the weights hold one layer
    (tmp_path / "clip" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match=r"(?s)model\.safetensors.*encoder\.layers\.1\.mlp\.fc1\.kernel"):
        load_clip_text(tmp_path / "clip", cache=False)
