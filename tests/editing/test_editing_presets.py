"""Editing presets: each method rewires exactly the sites and tensors it should; rows, weights, windows, P2P alignment."""
import numpy as np
import pytest
from ieadapt_jax.models import UNetMotionConfig, UNetMotionModel

from ieadapt_jax.editing import (
    METHODS,
    EditError,
    check_p2p_prompts,
    ddim_config,
    decoder_sites,
    edit_rewiring,
    pair_layout,
    select_sites,
)
from ieadapt_jax.toy.model import ToyTokenizer, abstract_models

STEPS = 5
SD15_TOKENFLOW = [f"up_blocks.{b}.attentions.{a}.transformer_blocks.0.attn1"
                  for b, a in ((1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2))]


@pytest.fixture(scope="module")
def unet():
    """The toy UNet (abstract parameters: only its site table and block structure are used)."""
    return abstract_models("toy")[0]


@pytest.fixture(scope="module")
def entropy(unet):
    """A fixed, tie-free entropy per site of the toy table."""
    return np.random.default_rng(0).permutation(len(unet.site_table)) / len(unet.site_table)


def changed(rw, field):
    """{(site, row): source row} where ``field`` differs from the row's own index, at every step alike."""
    arr = np.asarray(getattr(rw, field))  # [steps, S, R]
    assert (arr == arr[0]).all()
    own = np.arange(arr.shape[-1])
    return {(int(s), int(r)): int(arr[0, s, r]) for s, r in zip(*np.nonzero(arr[0] != own))}


@pytest.mark.parametrize("method, fields", [("ieadapt", ("q_from", "k_from")), ("kv", ("k_from", "v_from")),
                                            ("v", ("v_from",)), ("all", ("q_from", "k_from")),
                                            ("tokenflow", ("q_from", "k_from")), ("p2p", ("q_from", "k_from"))])
def test_each_method_rewires_exactly_its_sites_and_tensors(unet, entropy, method, fields):
    table = unet.site_table
    sites = select_sites(unet, method, entropy, 0.5)
    self_sites = table.select(kind="self")
    expected_sites = {
        "ieadapt": sorted(self_sites, key=lambda s: entropy[s])[:12],  # 24 self-attention sites, ρ = 0.5
        "kv": sorted(self_sites, key=lambda s: entropy[s])[:12],
        "v": sorted(self_sites, key=lambda s: entropy[s])[:12],
        "all": self_sites,
        "tokenflow": [table.index("up_blocks.1.attentions.0.transformer_blocks.0.attn1"),
                      table.index("up_blocks.1.attentions.1.transformer_blocks.0.attn1")],
        "p2p": table.select(kind="cross"),
    }[method]
    assert sorted(sites) == sorted(expected_sites)
    rw = edit_rewiring(table, [sites], METHODS[method].tensors, STEPS)
    want = {(s, dst): src for s in sites for src, dst in ((0, 2), (1, 3))}  # φ -> φ, c -> c; source rows untouched
    for field in ("q_from", "k_from", "v_from"):
        assert changed(rw, field) == (want if field in fields else {}), field
    assert (np.asarray(rw.mix) == np.asarray([1.0, 0.0, 0.0])).all()


def test_ratio_one_is_all_self_attention_sites(unet, entropy):
    table = unet.site_table
    full = select_sites(unet, "ieadapt", entropy, 1.0)
    assert full == select_sites(unet, "all") == tuple(table.select(kind="self"))
    a, b = (edit_rewiring(table, [s], "qk", STEPS) for s in (full, select_sites(unet, "all")))
    for x, y in zip((a.q_from, a.k_from, a.v_from, a.mix), (b.q_from, b.k_from, b.v_from, b.mix)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("ratio, count", [(0.25, 6), (0.5, 12), (0.65, 16), (0.75, 18), (0.01, 1)])
def test_ratio_picks_the_lowest_entropy_fraction(unet, entropy, ratio, count):
    sites = select_sites(unet, "ieadapt", entropy, ratio)
    self_sites = unet.site_table.select(kind="self")
    assert len(sites) == count
    assert max(entropy[list(sites)]) < min(entropy[[s for s in self_sites if s not in sites]])


def test_tokenflow_is_decoder_layers_4_to_11_of_sd15():
    sd15 = UNetMotionModel.abstract(UNetMotionConfig())
    assert [sd15.site_table[s].name for s in decoder_sites(sd15)] == SD15_TOKENFLOW


def test_window_limits_injection_to_its_steps(unet, entropy):
    table = unet.site_table
    sites = select_sites(unet, "ieadapt", entropy)
    rw = edit_rewiring(table, [sites], "qk", STEPS, window=(1, 3))
    injected = [bool((np.asarray(rw.q_from[t]) != np.arange(4)).any()) for t in range(STEPS)]
    assert injected == [False, True, True, False, False]
    with pytest.raises(EditError, match="window"):
        edit_rewiring(table, [sites], "qk", STEPS, window=(2, 9))


def test_pairs_get_their_own_rows_videos_weights_and_sites(unet, entropy):
    table = unet.site_table
    row_video, weights = pair_layout(2, 5.0)
    assert row_video == (0, 0, 1, 1, 2, 2, 3, 3)
    np.testing.assert_array_equal(weights, [[-4, 5, 0, 0, 0, 0, 0, 0], [0, 0, -4, 5, 0, 0, 0, 0],
                                            [0, 0, 0, 0, -4, 5, 0, 0], [0, 0, 0, 0, 0, 0, -4, 5]])
    first, second = [0, 1], [2, 8]
    rw = edit_rewiring(table, [first, second], "kv", STEPS)
    assert changed(rw, "v_from") == {**{(s, d): r for s in first for r, d in ((0, 2), (1, 3))},
                                     **{(s, d): r for s in second for r, d in ((4, 6), (5, 7))}}


def test_explicit_sites_override_and_unknown_names_are_errors(unet, entropy):
    table = unet.site_table
    name = "mid_block.attentions.0.transformer_blocks.0.attn1"
    assert select_sites(unet, "kv", entropy, sites=[name]) == (table.index(name),)
    with pytest.raises(ValueError, match="unknown site"):
        select_sites(unet, "ieadapt", entropy, sites=["mid_block.attn9"])


def test_bad_method_and_ratio_are_errors(unet, entropy):
    with pytest.raises(EditError, match="unknown editing method 'masactrl'.*ieadapt"):
        select_sites(unet, "masactrl", entropy)
    with pytest.raises(EditError, match=r"\(0, 1\]"):
        select_sites(unet, "ieadapt", entropy, 1.5)
    with pytest.raises(EditError, match="profile it first"):
        select_sites(unet, "ieadapt", None)


def test_p2p_needs_token_aligned_prompts():
    tokenizer = ToyTokenizer()
    check_p2p_prompts(tokenizer, "a large red circle moving left on a white background",
                      "a large blue circle moving left on a white background")
    with pytest.raises(EditError, match="source has 12 tokens and the target 11.*--method ieadapt"):
        check_p2p_prompts(tokenizer, "a large red circle moving left on a white background",
                          "a large red circle bouncing on a white background")


def test_editing_samples_with_ddim_on_the_snapshots_noise_schedule():
    pndm = {"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear", "skip_prk_steps": True}
    assert ddim_config(pndm) == {**pndm, "_class_name": "DDIMScheduler", "clip_sample": False}
    ddim = {"_class_name": "DDIMScheduler", "clip_sample": True}
    assert ddim_config(ddim) == ddim
