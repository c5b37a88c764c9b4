"""Toy world: determinism, jit/vmap, rendering geometry, captions and tokenizer, the held-out split."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ieadapt_jax.toy import world
from ieadapt_jax.toy.world import VOCAB, VocabularyError


def attrs_row(attrs: world.Attributes, i: int) -> world.Attributes:
    """Row i of a batch of attribute sets."""
    return jax.tree.map(lambda x: x[i], attrs)


# ----------------------------------------------------------------------------------------- generation


def test_render_is_deterministic_in_the_seed_and_shaped():
    attrs = world.train_attributes(jax.random.key(0), 6, two_object_fraction=0.5)
    again = world.train_attributes(jax.random.key(0), 6, two_object_fraction=0.5)
    assert all(np.array_equal(x, y) for x, y in zip(attrs, again))
    videos = world.render_batch(attrs, jax.random.key(1))
    assert videos.shape == (6, world.FRAMES, world.HEIGHT, world.WIDTH, 3) and videos.dtype == jnp.float32
    assert float(videos.min()) >= 0.0 and float(videos.max()) <= 1.0
    np.testing.assert_array_equal(videos, world.render_batch(attrs, jax.random.key(1)))
    assert not np.array_equal(videos, world.render_batch(attrs, jax.random.key(2)))
    as_bytes = world.to_uint8(videos)
    assert as_bytes.dtype == jnp.uint8 and as_bytes.shape == videos.shape


def test_jit_and_vmap_match_a_loop_of_single_renders():
    attrs = world.heldout_attributes(jax.random.key(3), 4, two_object_fraction=0.5)
    keys = jax.random.split(jax.random.key(4), 4)
    batched = jax.jit(jax.vmap(world.render))(attrs, keys)
    single = jax.jit(world.render)
    for i in range(4):
        np.testing.assert_allclose(batched[i], single(attrs_row(attrs, i), keys[i]), atol=1e-6)
    sampled = world.train_attributes(jax.random.key(5), 7)
    assert sampled.shape.shape == (7, world.MAX_OBJECTS) and sampled.background.shape == (7,)
    assert all(f.dtype == jnp.int32 for f in sampled)


def test_objects_keep_off_the_border_band_and_have_soft_edges():
    attrs = world.train_attributes(jax.random.key(6), 64, two_object_fraction=0.5)
    videos = np.asarray(world.render_batch(attrs, jax.random.key(7)))
    tones = world.BACKGROUND_TONES[np.asarray(attrs.background)]  # [B, 2]
    half = world.WIDTH // 2
    band = np.concatenate([videos[:, :, :2], videos[:, :, -2:]], axis=2)  # [B, F, 4, W, 3]
    np.testing.assert_array_equal(band[..., :half, :], np.broadcast_to(tones[:, 0, None, None, None, None],
                                                                       band[..., :half, :].shape))
    np.testing.assert_array_equal(band[..., half:, :], np.broadcast_to(tones[:, 1, None, None, None, None],
                                                                       band[..., half:, :].shape))
    assert np.all(videos[:, :, :, :2] == videos[:, :, :, :2, :1])  # left columns grey: no object there
    plain = world.render(world.one_object("circle", "red", "large", "static", "black"), jax.random.key(8))
    red = np.asarray(plain[..., 0])
    assert np.any((red > 0.05) & (red < 0.9)), "anti-aliased edge pixels between background and object"


def test_shapes_fill_their_box_as_designed():
    areas = {}
    for shape in world.SHAPES:
        video = world.render(world.one_object(shape, "blue", "large", "static", "black"), jax.random.key(9))
        areas[shape] = float(video[0, ..., 2].sum() / world.COLOUR_RGB[4, 2])
    box = (2 * world.HALF_EXTENTS[1]) ** 2
    expected = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5, "diamond": 0.5}
    for shape, fill in expected.items():
        assert areas[shape] / box == pytest.approx(fill, abs=0.02), shape


def test_palette_is_saturated_distinct_and_far_from_every_background():
    rgb = world.COLOUR_RGB
    assert len(world.COLOURS) >= 6 and len(set(map(tuple, rgb.round(3)))) == len(rgb)
    tones = np.unique(world.BACKGROUND_TONES)
    contrast = np.linalg.norm(rgb[:, None, :] - tones[None, :, None], axis=-1)
    assert contrast.min() >= 0.7


# ------------------------------------------------------------------------------ captions, tokenizer


def test_caption_parse_encode_decode_round_trip():
    attrs = world.train_attributes(jax.random.key(10), 40, two_object_fraction=0.5)
    captions = world.caption(attrs)
    assert isinstance(captions, list) and len(captions) == 40
    assert any(" and a " in c for c in captions) and any(" and a " not in c for c in captions)
    one = attrs_row(attrs, 0)
    assert world.caption(one) == captions[0]
    ids = world.encode(captions)
    assert ids.shape == (40, world.CONTEXT_LENGTH) and ids.dtype == np.int32
    assert np.all(ids[:, 0] == world.BOS_ID) and np.all((ids == world.EOS_ID).sum(1) == 1)
    assert world.decode(ids) == captions
    for text in captions:
        assert world.caption(world.parse(text)) == text
    assert world.caption(world.one_object("circle", "red", "small", "left", "white")) == \
        "a small red circle moving left on a white background"


def test_every_caption_fits_the_context_and_uses_the_vocabulary():
    assert len(set(VOCAB)) == len(VOCAB) and VOCAB[:3] == ("<pad>", "<bos>", "<eos>")
    longest_object = max((f"a {s} {c} {sh} {world._motion_phrase(m)}" for s, c, sh, m in itertools.product(
        world.SIZES, world.COLOURS, world.SHAPES, range(len(world.MOTIONS)))), key=lambda t: len(t.split()))
    longest_background = max(world.BACKGROUNDS, key=lambda b: len(b.split()))
    text = f"{longest_object} and {longest_object} on a {longest_background} background"
    assert len(text.split()) + 2 <= world.CONTEXT_LENGTH
    assert world.decode(world.encode(text)) == text
    words = {w for t in world.caption(world.train_attributes(jax.random.key(11), 200, two_object_fraction=0.5))
             for w in t.split()}
    assert words <= set(VOCAB)


def test_unknown_words_and_bad_captions_are_clear_errors():
    with pytest.raises(VocabularyError, match=r"unknown word 'purple'.*circle"):
        world.encode("a small purple circle moving left on a white background")
    with pytest.raises(VocabularyError, match="unknown word '<bos>'"):
        world.encode("<bos> a")
    with pytest.raises(VocabularyError, match="expected 'a <size> <colour> <shape> <motion>'"):
        world.parse("a red small circle moving left on a white background")
    with pytest.raises(VocabularyError, match="unknown motion 'moving'"):
        world.parse("a small red circle moving on a white background")
    with pytest.raises(VocabularyError, match="unknown background"):
        world.parse("a small red circle moving left on a red background")
    with pytest.raises(VocabularyError, match="at most 22 fit"):
        world.encode(" ".join(["a"] * 23))
    with pytest.raises(VocabularyError, match="outside the toy vocabulary"):
        world.decode([world.BOS_ID, len(VOCAB)])
    with pytest.raises(ValueError, match="unknown name 'hexagon'; valid: circle"):
        world.one_object("hexagon", "red", "small", "left", "white")


# ------------------------------------------------------------------------------------ held-out split


def test_heldout_split_is_disjoint_large_enough_and_keeps_every_pair_in_training():
    train = {tuple(t) for t in world.TRAIN_COMBINATIONS.tolist()}
    heldout = {tuple(t) for t in world.HELDOUT_COMBINATIONS.tolist()}
    total = len(world.SHAPES) * len(world.COLOURS) * len(world.MOTIONS)
    assert not train & heldout and len(train | heldout) == total
    assert len(heldout) >= 0.1 * total
    for a, b in itertools.combinations(range(3), 2):
        sizes = (len(world.SHAPES), len(world.COLOURS), len(world.MOTIONS))
        seen = {(t[a], t[b]) for t in train}
        assert len(seen) == sizes[a] * sizes[b], f"some pair of attributes {a}, {b} never appears in training"


def test_samplers_respect_the_split():
    def triples(attrs, k):
        return {tuple(t) for t in np.stack([attrs.shape[:, k], attrs.colour[:, k], attrs.motion[:, k]], -1).tolist()}

    train_set = {tuple(t) for t in world.TRAIN_COMBINATIONS.tolist()}
    attrs = world.train_attributes(jax.random.key(12), 500, two_object_fraction=0.5)
    two = np.asarray(attrs.count) == 2
    assert 0.4 < two.mean() < 0.6
    assert triples(attrs, 0) <= train_set and triples(jax.tree.map(lambda x: x[two], attrs), 1) <= train_set
    assert np.all(np.asarray(attrs.colour[:, 0]) != np.asarray(attrs.colour[:, 1]))
    test = world.heldout_attributes(jax.random.key(13), 500)
    assert np.all(np.asarray(test.count) == 1)
    assert triples(test, 0) == {tuple(t) for t in world.HELDOUT_COMBINATIONS.tolist()}
    assert np.all(world.is_heldout(test.shape[:, 0], test.colour[:, 0], test.motion[:, 0]))
