"""The toy world: procedural videos of simple moving shapes, their captions and a word-level tokenizer.

    attrs = train_attributes(jax.random.key(0), 8)             # Attributes, fields int32 [8, ...]
    videos = render_batch(attrs, jax.random.key(1))            # float32 [8, 16, 32, 32, 3] in [0, 1]
    texts = caption(attrs)                                     # ["a small red circle moving left on a ...", ...]
    ids = encode(texts)                                        # int32 [8, CONTEXT_LENGTH]
    one = render(parse("a large blue square bouncing on a black background"), jax.random.key(2))

**Pixels.** Videos are 16 frames of 32x32 RGB, float32 in [0, 1]. 32x32 is the smallest size at which every
attribute stays legible (the small shapes are 10 px across, so a triangle and a diamond differ by whole
pixels, and the metrics in :mod:`ieadapt_jax.toy.metrics` classify them from mask geometry), while a small
pixel-space UNet over 16x32x32 positions keeps the default edit (inversion plus a 4-row edit, 25 steps each)
within the 120 s budget of a 2-core CPU; 48x48 would cost 2.25x as much in every layer for no new attribute.

**Objects.** One or two objects (:data:`MAX_OBJECTS`), each a shape (circle, square, triangle, diamond) of
a colour (six fully separated hues, 60 degrees apart: red, yellow, green, cyan, blue, magenta) and a size
(small or large: the shape's bounding box is 10 or 15 px on a side; every shape fills the same box). The
second object is drawn over the first. Edges are anti-aliased: a pixel's coverage is
``clip(0.5 - sdf, 0, 1)`` of the exact signed distance ``sdf`` (in px) from the pixel centre to the shape.

**Motions.** Eight straight ones (left, right, up, down and the four diagonals, named "up-left" etc.) travel
:data:`TRAVEL` px per axis over the 16 frames, accelerating from rest (the offset grows as (t / 15)^2), so a
moving video played backwards is not a video of this world: the arrow of time is visible. (toyworld-1 moved
at constant speed; its data was symmetric under time reversal, "moving left" backwards being "moving right",
and a model trained on it learned the axis of a caption's direction but not its sign); "bouncing" rises and
falls twice by :data:`BOUNCE_HEIGHT` px (``y = y0 - h |sin(2 pi t / 15)|``, t = 0..15); "static" stays put. The start is
drawn uniformly (from the render key) among positions that keep the whole path at least :data:`MARGIN` px
inside the frame, so no object ever leaves the frame or touches its 2-px border band. With two objects,
the key draws :data:`_PLACEMENTS` such placements of the pair and the one whose bounding boxes stay furthest
apart over the video is drawn (two large objects moving the same way may still overlap a little).

**Backgrounds.** Plain white, black or gray, or a two-tone left|right split of two of them ("a white and
black background" is white on the left half, black on the right). Backgrounds are achromatic and objects
are saturated, so every object colour is at least 0.7 (RGB Euclidean, [0, 1] units) from every background
colour, and mixing an object's colour with a background (its anti-aliased edges) keeps its hue.

**Captions.** ``a <size> <colour> <shape> <motion phrase>[ and a <size> <colour> <shape> <motion phrase>]
on a <background> background``; motion phrases are "moving <direction>", "bouncing" and "standing still".
:func:`parse` inverts :func:`caption`. The tokenizer works on exactly these words (:data:`VOCAB`) plus
``<pad>``, ``<bos>`` and ``<eos>``.

**Held-out split.** A combination is a (shape, colour, motion) triple of one object; there are
4 x 6 x 10 = 240. The triple (s, c, m) (indices into :data:`SHAPES`, :data:`COLOURS`, :data:`MOTIONS`) is held
out iff ``(s + 2c + 3m) % 8 == 0``: 30 triples (12.5%). The rule is deterministic, needs no seed, and spreads
the held-out triples so that every shape, colour and motion, and every pair of them, still appears in
training: composition is tested on new triples of known parts. Sizes and backgrounds are free.
:func:`train_attributes` draws only training triples (for every object); :func:`heldout_attributes` gives
the first object a held-out triple. A trained model records :data:`WORLD_VERSION`; any change to
what this module draws or says must bump it.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import IEAdaptError

WORLD_VERSION = "toyworld-2"

FRAMES, HEIGHT, WIDTH = 16, 32, 32
MAX_OBJECTS = 2

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = ("red", "yellow", "green", "cyan", "blue", "magenta")
SIZES = ("small", "large")
MOTIONS = ("left", "right", "up", "down", "up-left", "up-right", "down-left", "down-right", "bouncing", "static")
# name -> (left half, right half); plain backgrounds use one tone twice.
_TONES = {"white": 1.0, "black": 0.0, "gray": 0.5}
BACKGROUNDS = ("white", "black", "gray", "white and black", "black and white", "white and gray",
               "gray and white", "black and gray", "gray and black")

# Hue (degrees) of each colour, in COLOURS order; RGB at HSV saturation 0.9, value 0.95.
COLOUR_HUES = np.arange(len(COLOURS), dtype=np.float32) * 60.0
_SATURATION, _VALUE = 0.9, 0.95
# Half the side of each size's bounding box, px.
HALF_EXTENTS = np.array([5.0, 7.5], np.float32)
TRAVEL = 10.0  # px per moving axis over the whole video
BOUNCE_HEIGHT = 8.0  # px
_PLACEMENTS = 16  # random placements tried per video; the best-separated pair of paths is drawn
MARGIN = 2.5  # px kept free between any object (with its anti-aliased edge) and the frame border
# Unit step per frame axis (x right, y down) of each motion; bouncing and static do not travel.
DIRECTIONS = np.array(
    [[-1, 0], [1, 0], [0, -1], [0, 1], [-1, -1], [1, -1], [-1, 1], [1, 1], [0, 0], [0, 0]], np.float32)
BOUNCING = MOTIONS.index("bouncing")
STATIC = MOTIONS.index("static")

_HELDOUT_MODULUS = 8

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
_MOTION_WORDS = ("moving", "bouncing", "standing", "still")
_DIRECTION_WORDS = MOTIONS[:8]
VOCAB = (PAD, BOS, EOS, "a", "and", "on", "background") + _MOTION_WORDS + _DIRECTION_WORDS + SIZES + COLOURS \
    + SHAPES + tuple(_TONES)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
CONTEXT_LENGTH = 24  # BOS + the longest two-object caption (19 words) + EOS, rounded up
_WORD_ID = {word: i for i, word in enumerate(VOCAB)}


class Attributes(NamedTuple):
    """What one video shows, as indices into the name tables; any leading batch axes ``...``.

    Object fields are int32 ``[..., MAX_OBJECTS]``; the entries of objects past ``count`` are ignored.
    """

    shape: jax.Array  # int32 [..., MAX_OBJECTS], into SHAPES
    colour: jax.Array  # int32 [..., MAX_OBJECTS], into COLOURS
    size: jax.Array  # int32 [..., MAX_OBJECTS], into SIZES
    motion: jax.Array  # int32 [..., MAX_OBJECTS], into MOTIONS
    count: jax.Array  # int32 [...], objects drawn: 1..MAX_OBJECTS
    background: jax.Array  # int32 [...], into BACKGROUNDS


class VocabularyError(IEAdaptError):
    """A caption word outside the toy vocabulary, or a caption the toy grammar cannot read."""


# ------------------------------------------------------------------------------------------ palette


def _hsv_to_rgb(hue_degrees: float, saturation: float, value: float) -> tuple[float, float, float]:
    """RGB in [0, 1] of one HSV colour (hue in degrees)."""
    def channel(n: float) -> float:
        k = (n + hue_degrees / 60.0) % 6.0
        return value - value * saturation * max(0.0, min(k, 4.0 - k, 1.0))
    return channel(5.0), channel(3.0), channel(1.0)


COLOUR_RGB = np.array([_hsv_to_rgb(h, _SATURATION, _VALUE) for h in COLOUR_HUES], np.float32)  # [6, 3]


def _background_tones(name: str) -> tuple[float, float]:
    """(left, right) grey levels of a background name."""
    tones = name.split(" and ")
    return _TONES[tones[0]], _TONES[tones[-1]]


BACKGROUND_TONES = np.array([_background_tones(b) for b in BACKGROUNDS], np.float32)  # [9, 2]: left, right


# ------------------------------------------------------------------------------------ held-out split


def is_heldout(shape, colour, motion):
    """Whether the (shape, colour, motion) triple (indices; arrays broadcast) is held out from training."""
    return (shape + 2 * colour + 3 * motion) % _HELDOUT_MODULUS == 0


def _combinations(heldout: bool) -> np.ndarray:
    """int32 [N, 3]: the (shape, colour, motion) triples on one side of the split, in lexicographic order."""
    grid = np.stack(np.meshgrid(np.arange(len(SHAPES)), np.arange(len(COLOURS)), np.arange(len(MOTIONS)),
                                indexing="ij"), axis=-1).reshape(-1, 3)  # [S*C*M, 3]
    keep = is_heldout(grid[:, 0], grid[:, 1], grid[:, 2]) == heldout
    return grid[keep].astype(np.int32)


TRAIN_COMBINATIONS = _combinations(heldout=False)  # int32 [210, 3]
HELDOUT_COMBINATIONS = _combinations(heldout=True)  # int32 [30, 3]


def _sample_attributes(key: jax.Array, n: int, first: np.ndarray, two_object_fraction: float) -> Attributes:
    """n attribute sets: object 1's triple from ``first``, object 2's from training with another colour."""
    k_first, k_second, k_size, k_count, k_background = jax.random.split(key, 5)
    first = jnp.asarray(first)
    train = jnp.asarray(TRAIN_COMBINATIONS)
    one = first[jax.random.randint(k_first, (n,), 0, len(first))]  # [n, 3]
    other_colour = train[None, :, 1] != one[:, 1:2]  # [n, N_train]
    logits = jnp.where(other_colour, 0.0, -jnp.inf)
    two = train[jax.random.categorical(k_second, logits, axis=-1)]  # [n, 3]
    triples = jnp.stack([one, two], axis=1)  # [n, MAX_OBJECTS, 3]
    count = 1 + (jax.random.uniform(k_count, (n,)) < two_object_fraction).astype(jnp.int32)
    return Attributes(
        shape=triples[..., 0],
        colour=triples[..., 1],
        size=jax.random.randint(k_size, (n, MAX_OBJECTS), 0, len(SIZES)),
        motion=triples[..., 2],
        count=count,
        background=jax.random.randint(k_background, (n,), 0, len(BACKGROUNDS)),
    )


@functools.partial(jax.jit, static_argnums=1)
def train_attributes(key: jax.Array, n: int, *, two_object_fraction: float = 0.0) -> Attributes:
    """n random training attribute sets (fields [n, ...]): every object's triple is a training combination.

    Sizes and backgrounds are uniform; a fraction ``two_object_fraction`` of the videos (in expectation) gets
    a second object, of a colour other than the first's. Compiled once per ``n``.
    """
    return _sample_attributes(key, n, TRAIN_COMBINATIONS, two_object_fraction)


@functools.partial(jax.jit, static_argnums=1)
def heldout_attributes(key: jax.Array, n: int, *, two_object_fraction: float = 0.0) -> Attributes:
    """n random test attribute sets whose first object has a held-out (shape, colour, motion) triple.

    Any second object (see :func:`train_attributes`) has a training triple. Compiled once per ``n``.
    """
    return _sample_attributes(key, n, HELDOUT_COMBINATIONS, two_object_fraction)


def one_object(shape, colour, size, motion, background) -> Attributes:
    """Attributes of single-object videos from names or indices (int arrays broadcast to a batch)."""
    fields = [_indices(table, value) for table, value in
              ((SHAPES, shape), (COLOURS, colour), (SIZES, size), (MOTIONS, motion), (BACKGROUNDS, background))]
    fields = jnp.broadcast_arrays(*fields)
    pad = jnp.zeros_like(fields[0])
    shape_i, colour_i, size_i, motion_i, background_i = fields
    objects = [jnp.stack([f, pad], axis=-1) for f in (shape_i, colour_i, size_i, motion_i)]  # [..., 2]
    return Attributes(*objects, count=jnp.ones_like(pad), background=background_i)


def _indices(table: Sequence[str], value) -> jax.Array:
    """int32 indices of a name (or of indices) into ``table``; unknown names are an error listing the table."""
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"unknown name {value!r}; valid: {', '.join(table)}")
        return jnp.int32(table.index(value))
    return jnp.asarray(value, jnp.int32)


# ------------------------------------------------------------------------------------------ rendering


def _box_sdf(p: jax.Array, half: jax.Array) -> jax.Array:
    """Signed distance [...] from points p [..., 2] to the axis-aligned square of half-side ``half``."""
    q = jnp.abs(p) - half
    outside = jnp.linalg.norm(jnp.maximum(q, 0.0), axis=-1)
    return outside + jnp.minimum(jnp.max(q, axis=-1), 0.0)


def _triangle_sdf(p: jax.Array, half: jax.Array) -> jax.Array:
    """Signed distance [...] from p [..., 2] to the upright triangle (apex (0, -h), base y = +h, x in ±h)."""
    vertices = jnp.stack([jnp.array([0.0, -1.0]), jnp.array([1.0, 1.0]), jnp.array([-1.0, 1.0])]) * half
    edges = jnp.roll(vertices, -1, axis=0) - vertices  # [3, 2]
    w = p[..., None, :] - vertices  # [..., 3, 2]
    t = jnp.clip(jnp.sum(w * edges, -1) / jnp.sum(edges * edges, -1), 0.0, 1.0)  # [..., 3]
    distance = jnp.min(jnp.linalg.norm(w - t[..., None] * edges, axis=-1), axis=-1)
    cross = edges[:, 0] * w[..., 1] - edges[:, 1] * w[..., 0]  # [..., 3]; >= 0 inside (clockwise on screen)
    inside = jnp.all(cross >= 0.0, axis=-1)
    return jnp.where(inside, -distance, distance)


def _shape_sdf(p: jax.Array, shape: jax.Array, half: jax.Array) -> jax.Array:
    """Signed distance [...] from p [..., 2] (relative to the bounding-box centre) to shape ``shape``."""
    rotated = jnp.stack([p[..., 0] + p[..., 1], p[..., 0] - p[..., 1]], axis=-1) / math.sqrt(2.0)
    sdfs = jnp.stack([
        jnp.linalg.norm(p, axis=-1) - half,
        _box_sdf(p, half),
        _triangle_sdf(p, half),
        _box_sdf(rotated, half / math.sqrt(2.0)),
    ])  # [4, ...] in SHAPES order
    return sdfs[shape]


def motion_offsets(motion: jax.Array) -> jax.Array:
    """float32 [F, 2]: (x, y) offset in px of a motion's path at each frame from its start."""
    t = jnp.arange(FRAMES, dtype=jnp.float32)
    straight = jnp.asarray(DIRECTIONS)[motion] * TRAVEL * (t[:, None] / (FRAMES - 1)) ** 2  # [F, 2]
    hop = -BOUNCE_HEIGHT * jnp.abs(jnp.sin(2.0 * jnp.pi * t / (FRAMES - 1)))  # [F]
    bounce = jnp.stack([jnp.zeros_like(hop), hop], axis=-1) * (motion == BOUNCING)
    return straight + bounce


def _path(motion: jax.Array, half: jax.Array, u: jax.Array) -> jax.Array:
    """float32 [F, 2]: bounding-box centre per frame; ``u`` [2] in [0, 1) places the start in its free range."""
    offsets = motion_offsets(motion)
    frame = jnp.array([WIDTH, HEIGHT], jnp.float32)
    low = MARGIN + half - offsets.min(axis=0)  # [2]
    high = frame - MARGIN - half - offsets.max(axis=0)
    return low + u * (high - low) + offsets


def _placed_paths(motions: jax.Array, halves: jax.Array, key: jax.Array) -> jax.Array:
    """float32 [MAX_OBJECTS, F, 2]: the paths of the best-separated of :data:`_PLACEMENTS` random placements.

    A placement's separation is the smallest, over frames, gap between the two objects' bounding boxes
    (Chebyshev distance of the centres minus both half-extents); with one object it does not matter.
    """
    u = jax.random.uniform(key, (_PLACEMENTS, MAX_OBJECTS, 2))
    paths = jax.vmap(jax.vmap(_path), in_axes=(None, None, 0))(motions, halves, u)  # [P, MAX_OBJECTS, F, 2]
    chebyshev = jnp.max(jnp.abs(paths[:, 0] - paths[:, 1]), axis=-1)  # [P, F]
    gap = jnp.min(chebyshev, axis=-1) - halves[0] - halves[1]  # [P]
    return paths[jnp.argmax(gap)]


def _background_image(background: jax.Array) -> jax.Array:
    """float32 [H, W, 3] of a background index: left half one tone, right half the other."""
    tones = jnp.asarray(BACKGROUND_TONES)[background]  # [2]
    right = jnp.arange(WIDTH) >= WIDTH // 2
    row = jnp.where(right, tones[1], tones[0])  # [W]
    return jnp.broadcast_to(row[None, :, None], (HEIGHT, WIDTH, 3))


@jax.jit
def render(attrs: Attributes, key: jax.Array) -> jax.Array:
    """float32 [F, H, W, 3] in [0, 1]: the video of one attribute set (unbatched fields), placed by ``key``.

    Deterministic in (attrs, key); jit- and vmap-able (see :func:`render_batch`).
    """
    halves = jnp.asarray(HALF_EXTENTS)[attrs.size]  # [MAX_OBJECTS]
    paths = _placed_paths(attrs.motion, halves, key)  # [MAX_OBJECTS, F, 2]
    ys, xs = jnp.meshgrid(jnp.arange(HEIGHT) + 0.5, jnp.arange(WIDTH) + 0.5, indexing="ij")
    pixels = jnp.stack([xs, ys], axis=-1)  # [H, W, 2] as (x, y)
    video = jnp.broadcast_to(_background_image(attrs.background), (FRAMES, HEIGHT, WIDTH, 3))
    for k in range(MAX_OBJECTS):
        half = halves[k]
        p = pixels[None] - paths[k][:, None, None, :]  # [F, H, W, 2]
        coverage = jnp.clip(0.5 - _shape_sdf(p, attrs.shape[k], half), 0.0, 1.0)  # [F, H, W]
        alpha = (coverage * (k < attrs.count))[..., None]  # [F, H, W, 1]
        video = video * (1.0 - alpha) + jnp.asarray(COLOUR_RGB)[attrs.colour[k]] * alpha
    return video


@jax.jit
def render_batch(attrs: Attributes, key: jax.Array) -> jax.Array:
    """float32 [B, F, H, W, 3]: :func:`render` of each of B attribute sets (fields [B, ...]), one key each."""
    keys = jax.random.split(key, attrs.background.shape[0])
    return jax.vmap(render)(attrs, keys)


def to_uint8(video: jax.Array) -> jax.Array:
    """uint8 video from a [0, 1] float one (rounded)."""
    return jnp.round(jnp.clip(video, 0.0, 1.0) * 255.0).astype(jnp.uint8)


# ------------------------------------------------------------------------------------------- captions


def _motion_phrase(motion: int) -> str:
    """The caption words of a motion index."""
    if motion == BOUNCING:
        return "bouncing"
    if motion == STATIC:
        return "standing still"
    return f"moving {MOTIONS[motion]}"


def _caption_one(attrs: Attributes) -> str:
    """Caption of one unbatched attribute set of host (numpy) arrays."""
    objects = [f"a {SIZES[attrs.size[k]]} {COLOURS[attrs.colour[k]]} {SHAPES[attrs.shape[k]]} "
               f"{_motion_phrase(int(attrs.motion[k]))}" for k in range(int(attrs.count))]
    return f"{' and '.join(objects)} on a {BACKGROUNDS[attrs.background]} background"


def caption(attrs: Attributes) -> str | list[str]:
    """The caption of an attribute set (a str), or of a batch of them (fields [B, ...]: a list of B str)."""
    host = Attributes(*(np.asarray(f) for f in attrs))
    if host.background.ndim == 0:
        return _caption_one(host)
    return [_caption_one(Attributes(*(f[i] for f in host))) for i in range(host.background.shape[0])]


def _split_words(text: str) -> list[str]:
    """Lower-case words of a caption, every one checked against the vocabulary."""
    words = text.lower().split()
    for word in words:
        if word not in _WORD_ID or word in (PAD, BOS, EOS):
            raise VocabularyError(f"unknown word {word!r} in caption {text!r}; the toy vocabulary is: "
                                  f"{' '.join(VOCAB[3:])}")
    return words


def _parse_object(words: list[str], text: str) -> tuple[int, int, int, int]:
    """(shape, colour, size, motion) of one object phrase ``a <size> <colour> <shape> <motion phrase>``."""
    if len(words) < 5 or words[0] != "a" or words[1] not in SIZES or words[2] not in COLOURS \
            or words[3] not in SHAPES:
        raise VocabularyError(f"cannot read the object {' '.join(words)!r} in {text!r}; expected "
                              "'a <size> <colour> <shape> <motion>', e.g. 'a small red circle moving left'")
    phrase = " ".join(words[4:])
    phrases = {_motion_phrase(m): m for m in range(len(MOTIONS))}
    if phrase not in phrases:
        raise VocabularyError(f"unknown motion {phrase!r} in {text!r}; valid: {', '.join(phrases)}")
    return SHAPES.index(words[3]), COLOURS.index(words[2]), SIZES.index(words[1]), phrases[phrase]


def parse(text: str) -> Attributes:
    """The attribute set (unbatched fields) of a toy caption; the inverse of :func:`caption`."""
    words = _split_words(text)
    if len(words) < 4 or words[-1] != "background" or "on" not in words:
        raise VocabularyError(f"cannot read {text!r}; expected '<objects> on a <background> background'")
    on = len(words) - 1 - words[::-1].index("on")
    background = " ".join(words[on + 2:-1])
    if words[on + 1] != "a" or background not in BACKGROUNDS:
        raise VocabularyError(f"unknown background in {text!r}; valid: {', '.join(BACKGROUNDS)}")
    object_words, current = [], []
    for i, word in enumerate(words[:on]):
        if word == "and" and i + 1 < on and words[i + 1] == "a":
            object_words.append(current)
            current = []
        else:
            current.append(word)
    object_words.append(current)
    if len(object_words) > MAX_OBJECTS:
        raise VocabularyError(f"{text!r} has {len(object_words)} objects; the toy world draws at most {MAX_OBJECTS}")
    objects = [_parse_object(w, text) for w in object_words]
    objects += [(0, 0, 0, 0)] * (MAX_OBJECTS - len(objects))
    shape, colour, size, motion = (jnp.array(field, jnp.int32) for field in zip(*objects))
    return Attributes(shape, colour, size, motion, count=jnp.int32(len(object_words)),
                      background=jnp.int32(BACKGROUNDS.index(background)))


# ------------------------------------------------------------------------------------------ tokenizer


def _encode_one(text: str) -> np.ndarray:
    """int32 [CONTEXT_LENGTH]: BOS, word ids, EOS, then PAD."""
    ids = [BOS_ID] + [_WORD_ID[w] for w in _split_words(text)] + [EOS_ID]
    if len(ids) > CONTEXT_LENGTH:
        raise VocabularyError(f"caption {text!r} has {len(ids) - 2} words; at most {CONTEXT_LENGTH - 2} fit")
    return np.array(ids + [PAD_ID] * (CONTEXT_LENGTH - len(ids)), np.int32)


def encode(text: str | Sequence[str]) -> np.ndarray:
    """Token ids of a caption (int32 [CONTEXT_LENGTH]) or of a list of captions (int32 [B, CONTEXT_LENGTH]).

    Words are lower-cased and split on whitespace; each must be in :data:`VOCAB`, else
    :class:`VocabularyError` names it and lists the vocabulary.
    """
    if isinstance(text, str):
        return _encode_one(text)
    return np.stack([_encode_one(t) for t in text]).reshape(-1, CONTEXT_LENGTH)  # [B, L]


def _decode_one(ids: np.ndarray) -> str:
    """The words of one id row, from after BOS up to EOS, PAD skipped."""
    words = []
    for i in ids.tolist():
        if i == EOS_ID:
            break
        if not 0 <= i < len(VOCAB):
            raise VocabularyError(f"token id {i} is outside the toy vocabulary (0..{len(VOCAB) - 1})")
        if i not in (PAD_ID, BOS_ID):
            words.append(VOCAB[i])
    return " ".join(words)


def decode(ids) -> str | list[str]:
    """Caption of ids [L] (a str) or of ids [B, L] (a list of str); stops at EOS, skips BOS and PAD."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
        return _decode_one(ids)
    return [_decode_one(row) for row in ids]
