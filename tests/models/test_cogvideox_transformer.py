"""CogVideoXTransformer3DModel vs diffusers on tiny random-weight fixtures (CPU, fp32), and its joint attention sites.

Fixture (reference §6, cogvideox_tiny): 2 heads x 16 (RoPE needs head_dim % 16 == 0), 2 layers, 4 latent
channels, text width 16, time width 8, base grid 8x8 latents. diffusers builds it, ``save_pretrained``
writes it (sharded for the RoPE model), our converter loads it. The latent grid 8x6 is not the base grid,
so the RoPE resize-crop positions and the recomputed sin-cos table are exercised.
"""
import json
import math

import diffusers
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb, get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import (
    get_resize_crop_region_for_grid,
)
from ieadapt_jax.convert.cogvideox import load_cogvideox_transformer
from ieadapt_jax.convert import ConversionError
from ieadapt_jax.models import CogVideoXTransformer3DModel, CogVideoXTransformerConfig
from ieadapt_jax.models.cogvideox_transformer import ConfigError

import ieadapt_jax as ia
from ieadapt_jax.core import make_forward

ATOL = 1e-4
BATCH, FRAMES, HEIGHT, WIDTH, CHANNELS, TEXT = 2, 3, 8, 6, 4, 8
TINY = dict(num_attention_heads=2, attention_head_dim=16, in_channels=CHANNELS, out_channels=CHANNELS, time_embed_dim=8,
            text_embed_dim=16, num_layers=2, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
            max_text_seq_length=TEXT)


def _build(tmp, rope: bool):
    torch.manual_seed(0)
    model = diffusers.CogVideoXTransformer3DModel(**TINY, use_rotary_positional_embeddings=rope).eval()
    with torch.no_grad():
        for p in model.parameters():  # zero biases and unit norms would hide mistakes
            p.add_(0.05 * torch.randn_like(p))
    folder = tmp / ("rope" if rope else "sincos")
    model.save_pretrained(folder, **({"max_shard_size": "40KB"} if rope else {}))
    return model, load_cogvideox_transformer(folder, cache=False), folder


@pytest.fixture(scope="module")
def rope(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("cogvideox"), rope=True)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    sample = rng.standard_normal((BATCH, FRAMES, HEIGHT, WIDTH, CHANNELS)).astype(np.float32)  # ours: [B, F, H, W, C]
    text = rng.standard_normal((BATCH, TEXT, 16)).astype(np.float32)
    return sample, np.array([999, 437]), text


def _rotary():
    """The rotary tables as diffusers' CogVideoXPipeline computes them for this latent grid."""
    p = TINY["patch_size"]
    grid = (HEIGHT // p, WIDTH // p)
    crops = get_resize_crop_region_for_grid(grid, TINY["sample_width"] // p, TINY["sample_height"] // p)
    return get_3d_rotary_pos_embed(TINY["attention_head_dim"], crops, grid, FRAMES)


def _diffusers(model, inputs, rotary):
    sample, timesteps, text = inputs
    with torch.no_grad():
        out = model(torch.from_numpy(sample.transpose(0, 1, 4, 2, 3).copy()), torch.from_numpy(text),
                    torch.from_numpy(timesteps), image_rotary_emb=rotary).sample
    return out.numpy().transpose(0, 1, 3, 4, 2)  # [B, F, C, H, W] -> [B, F, H, W, C]


def test_rope_model_matches_diffusers_from_sharded_checkpoint(rope, inputs):
    reference, ours, folder = rope
    assert len(list(folder.glob("*.safetensors"))) > 1
    forward, state = make_forward(ours)
    out, records = forward(state, *(jnp.asarray(x) for x in inputs))
    assert records is None
    np.testing.assert_allclose(out, _diffusers(reference, inputs, _rotary()), atol=ATOL)


def test_sincos_model_matches_diffusers(inputs, tmp_path):
    reference, ours, _ = _build(tmp_path, rope=False)
    forward, state = make_forward(ours)
    out, _ = forward(state, *(jnp.asarray(x) for x in inputs))
    np.testing.assert_allclose(out, _diffusers(reference, inputs, None), atol=ATOL)
    sample, timesteps, text = inputs
    with pytest.raises(ValueError, match="laid out for 8 text tokens"):
        ours(jnp.asarray(sample), jnp.asarray(timesteps), jnp.asarray(text[:, :5]))


class OracleProcessor:
    """diffusers' CogVideoX attention with an explicit map and the rewiring algebra written out per batch row:
    row b attends with Q/K/V of rows q_from/k_from/v_from[b]; output a·AV + i·V + u·mean_k(V). Keeps the entropy
    (normalised by log N) and energy mean((AV)²) of each row's map."""

    def __init__(self, q_from, k_from, v_from, mix):
        self.q_from, self.k_from, self.v_from = (torch.as_tensor(x) for x in (q_from, k_from, v_from))
        self.mix = torch.as_tensor(mix, dtype=torch.float32)

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        length = encoder_hidden_states.size(1)
        x = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        b, n, _ = x.shape
        q, k, v = (proj(x).view(b, n, attn.heads, -1).transpose(1, 2) for proj in (attn.to_q, attn.to_k, attn.to_v))
        q, k = attn.norm_q(q), attn.norm_k(k)
        q[:, :, length:] = apply_rotary_emb(q[:, :, length:], image_rotary_emb)
        k[:, :, length:] = apply_rotary_emb(k[:, :, length:], image_rotary_emb)
        q, k, v = q[self.q_from], k[self.k_from], v[self.v_from]
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)  # [B, H, N, N]
        av = p @ v
        self.entropy = (-(p * torch.log(p)).sum(-1) / math.log(n)).mean(dim=(1, 2)).numpy()
        self.energy = (av**2).mean(dim=(1, 2, 3)).numpy()
        a, i, u = (self.mix[:, j, None, None, None] for j in range(3))
        out = a * av + i * v + u * v.mean(dim=2, keepdim=True)
        out = attn.to_out[0](out.transpose(1, 2).reshape(b, n, -1))
        return out[:, length:], out[:, :length]


def test_joint_rewiring_modes_and_records_match_an_explicit_map_oracle(rope, inputs):
    reference, ours, _ = rope
    table = ours.site_table
    assert [(s.name, s.kind, s.heads, s.head_dim) for s in table] == [
        (f"transformer_blocks.{i}.attn1", "joint", 2, 16) for i in range(2)
    ]
    forward, state = make_forward(ours, record="joint")
    args = (state,) + tuple(jnp.asarray(x) for x in inputs)
    base = ia.noop(table, BATCH)
    cases = [
        ia.perturb(ia.perturb(base, table, 0, "I", rows=[1]), table, 1, "U", rows=[0]),
        ia.perturb(ia.inject(base, table, 0, src=[0], dst=[1], what="qk"), table, 1, 0.3, rows=[1]),
        ia.inject(ia.inject(base, table, 0, src=[1], dst=[0], what="kv"), table, 1, src=[0], dst=[1], what="v"),
    ]
    for rewiring in cases:
        processors = [OracleProcessor(*(np.asarray(f)[site] for f in (rewiring.q_from, rewiring.k_from,
                                                                      rewiring.v_from, rewiring.mix)))
                      for site in range(len(table))]
        for block, processor in zip(reference.transformer_blocks, processors):
            block.attn1.set_processor(processor)
        expected = _diffusers(reference, inputs, _rotary())
        out, records = forward(*args, rewiring)
        np.testing.assert_allclose(out, expected, atol=ATOL)
        np.testing.assert_allclose(records.entropy, [p.entropy for p in processors], atol=1e-5)
        np.testing.assert_allclose(records.energy, [p.energy for p in processors], rtol=1e-4)
    plain, _ = forward(*args, base)
    assert np.abs(np.asarray(out) - np.asarray(plain)).max() > 1e-3  # the rewiring changed the output
    reference.set_attn_processor(CogVideoXAttnProcessor2_0())


def test_full_size_5b_site_table():
    config = CogVideoXTransformerConfig(num_attention_heads=48, attention_head_dim=64, num_layers=42, text_embed_dim=4096,
                                        use_rotary_positional_embeddings=True)
    table = CogVideoXTransformer3DModel.abstract(config, dtype=jnp.bfloat16).site_table
    assert len(table) == 42 and {s.kind for s in table} == {"joint"}
    assert table[table.select(kind="joint", index=[7])[0]].name == "transformer_blocks.7.attn1"
    assert (table[41].heads, table[41].head_dim) == (48, 64)


def test_config_and_input_errors(rope, inputs, tmp_path):
    _, ours, folder = rope
    sample, timesteps, text = (jnp.asarray(x) for x in inputs)
    with pytest.raises(ValueError, match=r"transpose\(0, 1, 3, 4, 2\)"):
        ours(sample.transpose(0, 1, 4, 2, 3), timesteps, text)
    with pytest.raises(ValueError, match="multiples of the patch size 2"):
        ours(sample[:, :, :7], timesteps, text)
    with pytest.raises(ValueError, match="text_embed_dim is 16"):
        ours(sample, timesteps, text[..., :8])
    with pytest.raises(ValueError, match="timesteps"):
        ours(sample, jnp.zeros((3,)), text)
    with pytest.raises(ConfigError, match="multiple of 16"):
        CogVideoXTransformerConfig(attention_head_dim=24, use_rotary_positional_embeddings=True)
    with pytest.raises(ConfigError, match="patch_size_t"):
        CogVideoXTransformerConfig.from_dict({"patch_size_t": 2})
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps(dict(config, _class_name="UNet2DConditionModel")))
    with pytest.raises(ConversionError, match="expected CogVideoXTransformer3DModel"):
        load_cogvideox_transformer(tmp_path / "bad", cache=False)
    (tmp_path / "bad" / "config.json").write_text(json.dumps(dict(config, ofs_embed_dim=512)))
    with pytest.raises(ConversionError, match="config.json.*ofs_embed_dim"):
        load_cogvideox_transformer(tmp_path / "bad", cache=False)
