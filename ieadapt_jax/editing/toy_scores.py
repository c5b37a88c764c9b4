"""Weight-free scores of toy-world edits: did the edit take, and did the rest of the video stay?

Every score reads the videos' pixels with :mod:`ieadapt_jax.toy.metrics` (nothing is trusted from the
captions except what the target asks for):

- ``kind``: what the target caption changes relative to the source caption ("colour", "shape", "size",
  "motion", "background"; several joined by "+").
- ``success``: the edited video has an object, and every changed attribute read from it is the target
  caption's.
- ``kept``: both videos have an object, and every unchanged object attribute (shape, colour, size, motion)
  read from the edited video equals the one read from the source video.
- ``mask_iou``: per-frame object-mask IoU of source and edited (structure), mean over frames.
- ``centroid_error``: mean distance in px between the object centroids of source and edited (motion).
- ``background_psnr`` / ``background_mae``: agreement of the pixels outside both objects (background
  preservation; for a background edit it measures the change instead).
- ``flicker``: frame-to-frame change of the edited video's background.
"""
from __future__ import annotations

import jax
import numpy as np

from ..toy import metrics, world

OBJECT_FIELDS = ("shape", "colour", "size", "motion")


def edit_kind(source: str, target: str) -> str:
    """The attributes ``target`` changes relative to ``source`` (single-object toy captions), joined by "+"."""
    a, b = world.parse(source), world.parse(target)
    if int(a.count) != 1 or int(b.count) != 1:
        raise ValueError(f"toy edit scores read one object per video; got {source!r} -> {target!r}")
    changed = [field for field in OBJECT_FIELDS if int(getattr(a, field)[0]) != int(getattr(b, field)[0])]
    if int(a.background) != int(b.background):
        changed.append("background")
    return "+".join(changed) if changed else "none"


def background_class(video) -> np.ndarray:
    """int [...]: index into ``world.BACKGROUNDS`` of the background whose (left, right) tones are nearest
    the mean grey of the estimated background's left and right halves."""
    image = np.asarray(metrics.background(video)).mean(axis=-1)  # [..., H, W]
    half = image.shape[-1] // 2
    tones = np.stack([image[..., :half].mean(axis=(-2, -1)), image[..., half:].mean(axis=(-2, -1))], axis=-1)
    distance = np.linalg.norm(tones[..., None, :] - world.BACKGROUND_TONES, axis=-1)  # [..., 9]
    return np.argmin(distance, axis=-1)


def _read(video) -> dict[str, np.ndarray]:
    """Attribute indices read from videos [P, F, H, W, 3]: object fields, ``present`` and background, each [P]."""
    read = metrics.classify(video)
    out = {field: np.asarray(getattr(read, field)) for field in (*OBJECT_FIELDS, "present")}
    out["background"] = background_class(video)
    return out


def score_edits(source_videos, edited_videos, sources: list[str], targets: list[str]) -> list[dict]:
    """Scores (module docstring) of P edits: videos uint8 [P, F, H, W, 3], captions P each. One dict per pair."""
    source_videos, edited_videos = np.asarray(source_videos), np.asarray(edited_videos)
    src_read, edit_read = _read(source_videos), _read(edited_videos)
    iou = np.asarray(metrics.mask_iou(source_videos, edited_videos))
    centroid = np.asarray(metrics.centroid_error(source_videos, edited_videos))
    bg_psnr = np.asarray(metrics.background_psnr(source_videos, edited_videos))
    bg_mae = np.asarray(metrics.background_mae(source_videos, edited_videos))
    flicker = np.asarray(metrics.temporal_flicker(edited_videos))
    scores = []
    for p, (source, target) in enumerate(zip(sources, targets)):
        kind = edit_kind(source, target)
        changed = set(kind.split("+")) - {"none"}
        wanted = world.parse(target)
        success = bool(edit_read["present"][p]) and all(
            int(edit_read[f][p]) == int(np.asarray(getattr(wanted, f)).reshape(-1)[0]) for f in changed)
        kept = bool(src_read["present"][p] and edit_read["present"][p]) and all(
            int(edit_read[f][p]) == int(src_read[f][p]) for f in OBJECT_FIELDS if f not in changed)
        names = {"shape": world.SHAPES, "colour": world.COLOURS, "size": world.SIZES, "motion": world.MOTIONS,
                 "background": world.BACKGROUNDS}
        scores.append(dict(
            source=source, target=target, kind=kind, success=bool(success), kept=bool(kept),
            mask_iou=float(iou[p]), centroid_error=float(centroid[p]), background_psnr=float(bg_psnr[p]),
            background_mae=float(bg_mae[p]), flicker=float(flicker[p]),
            source_read={f: names[f][int(src_read[f][p])] for f in names},
            edited_read={f: names[f][int(edit_read[f][p])] for f in names},
        ))
    return scores


def score_edit(source_video, edited_video, source: str, target: str) -> dict:
    """:func:`score_edits` of one pair (videos uint8 [F, H, W, 3])."""
    stacked = jax.tree.map(lambda v: np.asarray(v)[None], (source_video, edited_video))
    return score_edits(*stacked, [source], [target])[0]
