"""Sweep definition, prompts, results store and metric registry: host-side logic, no model forward."""
import json

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ieadapt_jax.core.sites import SiteTable
from ieadapt_jax.sweep import definition as sd
from ieadapt_jax.sweep import metrics as sm
from ieadapt_jax.sweep.engine import thumbnail
from ieadapt_jax.sweep.store import ResultStore, SweepStoreError, read_rows

TABLE = SiteTable.build([
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1", "spatial_self", 2, 8),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn2", "cross", 2, 8),
    ("down_blocks.0.motion_modules.0.transformer_blocks.0.attn1", "temporal", 2, 8),
    ("mid_block.attentions.0.transformer_blocks.0.attn1", "spatial_self", 2, 8),
    ("mid_block.motion_modules.0.transformer_blocks.0.attn1", "temporal", 2, 8),
    ("up_blocks.0.attentions.0.transformer_blocks.0.attn1", "spatial_self", 2, 8),
    ("up_blocks.0.attentions.0.transformer_blocks.0.attn2", "cross", 2, 8),
    ("up_blocks.0.motion_modules.0.transformer_blocks.0.attn1", "temporal", 2, 8),
])


def definition(**kw):
    return sd.SweepDefinition(prompts=("a cat", "a dog"), seeds=(1, 2), **kw)


def test_expand_counts_order_and_keys():
    baselines, perturbed = sd.expand(definition(targets=("each",), modes=("I", "U", "0.5")), TABLE)
    assert len(baselines) == 4 and len(perturbed) == 4 * 6 * 3  # 2 prompts x 2 seeds; 6 self sites x 3 modes
    assert [c.index for c in baselines + perturbed] == list(range(len(baselines) + len(perturbed)))
    assert baselines[0].key == "p0000/s1/baseline/A" and baselines[0].sites == ()
    assert perturbed[0].key == "p0000/s1/site:down_blocks.0.attentions.0.transformer_blocks.0.attn1/I"
    assert perturbed[0].sites == (0,) and perturbed[2].mode == "0.5"
    assert len({c.key for c in baselines + perturbed}) == len(baselines) + len(perturbed)


def test_targets_select_the_right_sites():
    assert sd.resolve_target("kind:spatial", TABLE) == (0, 3, 5)
    assert sd.resolve_target("kind:temporal", TABLE) == (2, 4, 7)
    assert sd.resolve_target("block:up", TABLE) == (5, 7)
    assert sd.resolve_target("block:down_blocks.0.motion_modules", TABLE) == (2,)
    assert sd.resolve_target("block:mid:spatial", TABLE) == (3,)
    assert sd.resolve_target("regex:attentions", TABLE) == (0, 3, 5)  # self sites only
    assert sd.resolve_target("site:mid_block.attentions.0.transformer_blocks.0.attn1", TABLE) == (3,)
    entropy = np.array([0.9, np.nan, 0.99, 0.2, 0.5, 0.7, np.nan, 0.95])
    assert sd.resolve_target("entropy:top:50", TABLE, entropy) == (0, 2, 7)
    assert sd.resolve_target("entropy:bottom:50", TABLE, entropy) == (3, 4, 5)
    assert sd.resolve_target("entropy:top:34:temporal", TABLE, entropy) == (2,)
    blocks = dict(sd.expand_targets(["blocks"], TABLE))
    assert blocks["block:down"] == (0, 2) and blocks["block:mid"] == (3, 4) and blocks["block:up_blocks.0"] == (5, 7)
    assert blocks["block:down_blocks.0.attentions"] == (0,) and blocks["block:up_blocks.0.motion_modules"] == (7,)
    assert dict(sd.expand_targets(["entropy:top:50"], TABLE)) == {"entropy:top:50": None}


def test_definition_errors_name_what_is_wrong():
    with pytest.raises(sd.SweepDefinitionError, match="unknown target 'layers'"):
        definition(targets=("layers",))
    with pytest.raises(sd.SweepDefinitionError, match="unknown kind 'spacial'"):
        definition(targets=("each:spacial",))
    with pytest.raises(sd.SweepDefinitionError, match="PCT must be a number"):
        definition(targets=("entropy:top:150",))
    with pytest.raises(sd.SweepDefinitionError, match="unknown mode 'X'"):
        definition(modes=("X",))
    with pytest.raises(sd.SweepDefinitionError, match="modes repeat"):
        definition(modes=("I", "1"))
    with pytest.raises(sd.SweepDefinitionError, match="cross-attention"):
        sd.expand(definition(targets=("each:cross",), modes=("I",)), TABLE)
    assert len(sd.expand(definition(targets=("each:cross",), modes=("U",)), TABLE)[1]) == 8
    with pytest.raises(sd.SweepDefinitionError, match="unknown site 'mid.attn1'"):
        sd.expand(definition(targets=("site:mid.attn1",)), TABLE)
    with pytest.raises(sd.SweepDefinitionError, match="selects no site"):
        sd.expand(definition(targets=("regex:nothing_matches",)), TABLE)
    with pytest.raises(sd.SweepDefinitionError, match="need the baseline's records"):
        sd.expand(definition(targets=("entropy:top:50",), record="none"), TABLE)
    with pytest.raises(sd.SweepDefinitionError, match="repeat after expansion"):
        sd.expand(definition(targets=("each", "site:mid_block.attentions.0.transformer_blocks.0.attn1")), TABLE)


def test_config_rewiring_perturbs_the_chosen_rows_and_window():
    d = definition(targets=("kind:temporal",), modes=("0.25",), perturb_rows="cond", window=(1, 3), num_inference_steps=4)
    _, perturbed = sd.expand(d, TABLE)
    rw = sd.config_rewiring(d, TABLE, perturbed[0])
    assert rw.mix.shape == (4, len(TABLE), 2, 3)  # [steps, sites, rows (uncond, cond), 3]
    assert np.allclose(rw.mix[1, 2, 1], (0.0, 0.25, 0.75)) and np.allclose(rw.mix[1, 2, 0], (1, 0, 0))
    assert np.allclose(rw.mix[0], np.asarray((1.0, 0, 0))) and np.allclose(rw.mix[3], np.asarray((1.0, 0, 0)))
    assert np.allclose(rw.mix[2, 0, 1], (1, 0, 0))  # a spatial site stays unchanged
    d1 = definition(guidance_scale=1.0)
    assert d1.rows == (("cond", "A"),) and sd.config_rewiring(d1, TABLE, sd.expand(d1, TABLE)[1][0]).rows == 1


def test_prompt_sources(tmp_path):
    vbench = sd.load_prompts("vbench")
    assert len(vbench) == 93 and vbench[0] == "Close up of grapes on a rotating table."
    assert all(p and not p.startswith("#") for p in vbench)
    assert sd.load_prompts("vbench", limit=5) == vbench[:5]
    toy = sd.load_prompts("toy:3")
    assert toy == sd.toy_prompts(3) and all(p.endswith("background") for p in toy)
    file = tmp_path / "p.txt"
    file.write_text("# comment\n\n a cat \nthe dog\n")
    assert sd.load_prompts(file) == ("a cat", "the dog")
    with pytest.raises(sd.SweepDefinitionError, match="no such file"):
        sd.load_prompts(tmp_path / "missing.txt")
    with pytest.raises(sd.SweepDefinitionError, match="positive integer"):
        sd.load_prompts("toy:zero")


def test_vbench_prompt_file_is_the_aesthetic_quality_dimension():
    from pathlib import Path

    info = Path("/work/shared/data/vbench_full_info.json")
    if not info.is_file():
        pytest.skip("VBench info file not present")
    expected = [e["prompt_en"] for e in json.loads(info.read_text()) if "aesthetic_quality" in e["dimension"]]
    assert list(sd.load_prompts("vbench")) == expected


def test_store_appends_atomically_cuts_a_torn_tail_and_refuses_another_sweep(tmp_path):
    store = ResultStore(tmp_path / "out", {"definition": {"a": 1}})
    store.append([{"key": "x", "v": 1.0}, {"key": "y", "v": float("inf")}])
    with open(store.results_file, "ab") as f:
        f.write(b'{"key": "z", "v"')  # a kill in the middle of a write
    assert [r["key"] for r in read_rows(tmp_path / "out")] == ["x", "y"]
    resumed = ResultStore(tmp_path / "out", {"definition": {"a": 1}})
    resumed.append([{"key": "z", "v": 3.0}])
    assert [r["key"] for r in resumed.rows()] == ["x", "y", "z"] and resumed.rows()[1]["v"] == float("inf")
    video = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    np.testing.assert_array_equal(resumed.load_video(resumed.save_video("videos/a.npy", video)), video)
    with pytest.raises(SweepStoreError, match=r"differs in: definition \(a\)"):
        ResultStore(tmp_path / "out", {"definition": {"a": 2}})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(SweepStoreError, match="not empty"):
        ResultStore(tmp_path / "other", {"definition": {}})


def test_builtin_metrics_match_dm_pix_and_hand_computed_values():
    key = np.random.default_rng(0)
    video = key.random((5, 24, 24, 3)).astype(np.float32)
    other = np.clip(video + 0.05 * key.standard_normal(video.shape), 0, 1).astype(np.float32)
    chosen = [sm.get_metric(n) for n in ("ssim", "psnr", "temporal_consistency", "flicker", "motion")]
    measure = jax.jit(lambda v, b: sm.measure(chosen, {m.name: None for m in chosen}, v, b, 0))
    values = measure(video, other)
    np.testing.assert_allclose(values["ssim"], np.mean(dm_pix.ssim(video, other)), rtol=1e-6)
    np.testing.assert_allclose(values["psnr"], np.mean(dm_pix.psnr(video, other)), rtol=1e-6)
    np.testing.assert_allclose(values["temporal_consistency"], np.mean(dm_pix.ssim(video[1:], video[:-1])), rtol=1e-6)
    # A pixel ramp moving one grey level per frame: first difference 1/255 everywhere, second difference 0.
    ramp = np.broadcast_to((np.arange(5, dtype=np.float32) / 255.0)[:, None, None, None], (5, 8, 8, 3))
    ramp_values = measure(ramp, ramp)
    np.testing.assert_allclose(ramp_values["motion"], 1 / 255, rtol=1e-5)
    np.testing.assert_allclose(ramp_values["flicker"], 0.0, atol=1e-7)
    assert ramp_values["ssim"] == pytest.approx(1.0) and np.isinf(ramp_values["psnr"])


def test_metric_registry_and_weight_skips(tmp_path):
    logged = []
    metric = sm.Metric("demo_weighted", ("demo_value",), lambda s, v, b, p: {"demo_value": jnp.mean(v) * s["k"]},
                       pairwise=False, weights="demo/model.bin", setup=lambda path, prompts: {"k": float(len(prompts))})
    sm.register_metric(metric)
    try:
        with pytest.raises(sm.MetricError, match="already registered"):
            sm.register_metric(metric)
        with pytest.raises(sm.MetricError, match="already belong to"):
            sm.register_metric(sm.Metric("clash", ("ssim",), lambda *a: {}, pairwise=True))
        chosen = sm.select_metrics(None, toy=False, weights_dir=tmp_path, log=logged.append)
        assert "demo_weighted" not in [m.name for m in chosen] and "toy_structure" not in [m.name for m in chosen]
        assert "needs weights at <metrics-weights>/demo/model.bin" in logged[0]
        (tmp_path / "demo").mkdir()
        (tmp_path / "demo" / "model.bin").write_bytes(b"w")
        chosen = sm.select_metrics(["demo_weighted"], toy=False, weights_dir=tmp_path)
        states = sm.setup_metrics(chosen, tmp_path, ["a", "b"])
        out = sm.measure(chosen, states, jnp.full((3, 4, 4, 3), 0.5), jnp.zeros((3, 4, 4, 3)), 0)
        assert float(out["demo_value"]) == pytest.approx(1.0)
        with pytest.raises(sm.MetricError, match="not a toy model"):
            sm.select_metrics(["toy_structure"], toy=False, weights_dir=None)
        with pytest.raises(sm.MetricError, match="unknown metric 'nope'"):
            sm.get_metric("nope")
    finally:
        sm.METRICS.pop("demo_weighted")


def test_thumbnail_block_mean():
    video = np.zeros((2, 256, 512, 3), np.uint8)
    video[:, :4, :4] = 200
    small = thumbnail(video, side=128)
    assert small.shape == (2, 64, 128, 3) and small[0, 0, 0, 0] == 200 and small[0, 1, 1, 0] == 0
    assert thumbnail(video[:, :32, :32]).shape == (2, 32, 32, 3)
