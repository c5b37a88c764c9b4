"""Editing as rows and rewiring presets (paper §4.2, Algorithm 1, and the baselines of its Table 3).

An edit of P (source, target) pairs is one run of the sampling loop over V = 2P videos and R = 4P rows.
Pair p owns videos 2p (source) and 2p + 1 (target) and the rows

    4p + 0: source φ     4p + 1: source c     4p + 2: target φ     4p + 3: target c

all started from the same noise; W gives each video classifier-free guidance from its own two rows.
A method injects the source rows' tensors into the matching target rows (φ → φ, c → c) at its sites:

| method | sites | tensors | reference |
| --- | --- | --- | --- |
| ieadapt | self-attention sites (spatial and temporal) with the lowest ρ of the source's entropy | Q, K (the map) | paper §4.2 |
| all | every self-attention site | Q, K | paper Table 3 "All layers"; = ieadapt with ρ = 1 |
| tokenflow | spatial self-attention of decoder layers 4–11 | Q, K | TokenFlow / PnP |
| kv | the ieadapt sites | K, V | MasaCtrl |
| v | the ieadapt sites | V | value injection |
| p2p | every cross-attention site (prompts token-aligned) | Q, K | Prompt-to-Prompt |

Source rows are never rewired, so the source video is exactly what the source prompt generates alone.

On CogVideoX the self-attention sites are its joint text+video sites (``transformer_blocks.{i}.attn1``): ieadapt
ranks them by entropy, all takes every one, kv and v inject at the ieadapt sites (the source's keys and values
there include its text tokens'). tokenflow and p2p need a UNet's decoder and cross-attention sites, which a
joint-attention DiT does not have (:func:`check_applies` says so before anything runs).
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from ..core.errors import IEAdaptError
from ..core.protocols import Denoiser
from ..core.rewiring import (
    Rewiring,
    SiteSpec,
    check_window,
    inject,
    noop,
    over_steps,
    resolve_sites,
)
from ..core.sites import SiteTable

ROWS_PER_PAIR = 4
SOURCE_UNCOND, SOURCE_COND, TARGET_UNCOND, TARGET_COND = range(ROWS_PER_PAIR)
ROW_NAMES = ("source φ", "source c", "target φ", "target c")
DEFAULT_RATIO = 0.5
# TokenFlow / PnP: the self-attention of decoder layers 4..11 of SD1.5's 12 (3 layers in each of 4 up blocks).
TOKENFLOW_LAYERS = (4, 11)
SD_DECODER_LAYERS = 12
_UP_ATTENTION = re.compile(r"^up_blocks\.(\d+)\.attentions\.(\d+)\.")


class EditError(IEAdaptError):
    """An edit request that cannot run: unknown method, bad ratio or window, misaligned P2P prompts, ..."""


@dataclasses.dataclass(frozen=True)
class Method:
    """An editing method: which sites (``sites``: "entropy", "self", "decoder", "cross") and which tensors
    the target rows take from the source rows (``tensors``: "qk", "kv", "v")."""

    sites: str
    tensors: str
    summary: str


METHODS: dict[str, Method] = {
    "ieadapt": Method("entropy", "qk", "source maps at the self-attention sites of lowest entropy (bottom ρ)"),
    "all": Method("self", "qk", "source maps at every self-attention site"),
    "tokenflow": Method("decoder", "qk", "source maps at the spatial self-attention of decoder layers 4-11"),
    "kv": Method("entropy", "kv", "source keys and values at the ieadapt sites (MasaCtrl)"),
    "v": Method("entropy", "v", "source values at the ieadapt sites"),
    "p2p": Method("cross", "qk", "source cross-attention maps at every cross-attention site (Prompt-to-Prompt)"),
}


def method(name: str) -> Method:
    """The :class:`Method` called ``name``; an unknown name lists the valid ones."""
    if name not in METHODS:
        raise EditError(f"unknown editing method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def check_applies(denoiser: Denoiser, name: str) -> Method:
    """The :class:`Method` called ``name``, or :class:`EditError` when its sites do not exist in ``denoiser``:
    p2p without cross-attention sites, tokenflow without a UNet decoder (e.g. CogVideoX's joint-attention DiT)."""
    spec = method(name)
    table: SiteTable = denoiser.site_table
    joint = bool(table.select(kind="joint"))
    if spec.sites == "cross" and not table.select(kind="cross"):
        why = ("its text and video tokens share joint self-attention sites (transformer_blocks.{i}.attn1), where "
               "taking the source's Q and K replaces the whole joint map, text included: that is what --method all "
               "(every site) and ieadapt (the lowest-entropy sites) do") if joint else "it has none"
        raise EditError(f"method {name!r} injects the source's cross-attention maps (video queries on text keys, token "
                        f"by token); this model has no cross-attention sites: {why}")
    if spec.sites == "decoder" and not getattr(denoiser, "up_blocks", None):
        raise EditError(f"method {name!r} injects at fixed UNet decoder sites (spatial self-attention of up-block "
                        f"layers {TOKENFLOW_LAYERS[0]}-{TOKENFLOW_LAYERS[1]}); this model has no up blocks"
                        f"{' (a joint-attention DiT: all its layers are alike)' if joint else ''}: use --method ieadapt or all")
    return spec


def check_ratio(ratio: float) -> float:
    """ρ as a float in (0, 1], or :class:`EditError`."""
    ratio = float(ratio)
    if not 0.0 < ratio <= 1.0:
        raise EditError(f"the entropy ratio ρ must be in (0, 1] (the fraction of self-attention sites injected), got {ratio}")
    return ratio


def decoder_sites(unet: Denoiser, layers: tuple[int, int] = TOKENFLOW_LAYERS) -> tuple[int, ...]:
    """Spatial self-attention sites of the decoder layers ``layers`` (inclusive), counted as in SD1.5.

    Decoder layer l is the l-th (resnet, attention) pair of the up blocks in forward order (SD1.5: 4 up
    blocks of 3, l = 0..11). A decoder of L layers other than 12 maps the range proportionally,
    [round(4 L / 12), L − 1] for the default, so a smaller UNet keeps "the decoder but its first third".

    Raises:
        EditError: the model has no up blocks with spatial self-attention in that range.
    """
    per_block = [len(block.resnets) for block in getattr(unet, "up_blocks", [])]
    total = sum(per_block)
    start, stop = layers
    if total != SD_DECODER_LAYERS:
        start = int(round(start * total / SD_DECODER_LAYERS))
        stop = int(round((stop + 1) * total / SD_DECODER_LAYERS)) - 1
    offsets = np.concatenate([[0], np.cumsum(per_block)]) if per_block else np.zeros(1, int)
    table = unet.site_table
    chosen = []
    for s in table.select(kind="spatial_self"):
        match = _UP_ATTENTION.match(table[s].name)
        if match and start <= offsets[int(match.group(1))] + int(match.group(2)) <= stop:
            chosen.append(s)
    if not chosen:
        raise EditError(f"the tokenflow method needs spatial self-attention in decoder layers {start}..{stop}; "
                        "this model has none there (use --method ieadapt or all)")
    return tuple(chosen)


def select_sites(unet: Denoiser, name: str, entropy: np.ndarray | None = None, ratio: float = DEFAULT_RATIO,
                 sites: SiteSpec | None = None) -> tuple[int, ...]:
    """The sites method ``name`` injects at (positions, forward order).

    ``entropy`` [sites] is the source's profiled entropy (needed by the entropy-ranked methods); ``sites``
    (names or positions) overrides the method's own choice.
    """
    rule = check_applies(unet, name).sites
    table: SiteTable = unet.site_table
    if sites is not None:
        return tuple(resolve_sites(table, sites))
    if rule == "entropy":
        if entropy is None:
            raise EditError(f"method {name!r} ranks sites by the source's entropy: profile it first")
        return tuple(table.by_entropy(entropy, check_ratio(ratio), kind="self"))
    if rule == "self":
        return tuple(table.select(kind="self"))
    if rule == "cross":
        return tuple(table.select(kind="cross"))
    return decoder_sites(unet)


def pair_layout(pairs: int, guidance_scale: float) -> tuple[tuple[int, ...], np.ndarray]:
    """(row_video [4P], W float32 [2P, 4P]) of P edit pairs (module docstring)."""
    row_video = tuple(2 * p + (r >= TARGET_UNCOND) for p in range(pairs) for r in range(ROWS_PER_PAIR))
    weights = np.zeros((2 * pairs, ROWS_PER_PAIR * pairs), np.float32)
    for p in range(pairs):
        for video, (uncond, cond) in ((2 * p, (SOURCE_UNCOND, SOURCE_COND)), (2 * p + 1, (TARGET_UNCOND, TARGET_COND))):
            weights[video, ROWS_PER_PAIR * p + uncond] = 1.0 - guidance_scale
            weights[video, ROWS_PER_PAIR * p + cond] = guidance_scale
    return row_video, weights


def edit_rewiring(table: SiteTable, pair_sites, tensors: str, num_steps: int,
                  window: tuple[int, int] | None = None) -> Rewiring:
    """The [steps, sites, 4P] schedule: pair p's target rows take ``tensors`` from its source rows at
    ``pair_sites[p]`` for the steps in ``window`` = [start, stop) (None: every step)."""
    check_window(window, num_steps, what="injection window", error=EditError)
    rw = noop(table, ROWS_PER_PAIR * len(pair_sites))
    for p, sites in enumerate(pair_sites):
        if len(sites):
            base = ROWS_PER_PAIR * p
            rw = inject(rw, table, list(sites), src=[base + SOURCE_UNCOND, base + SOURCE_COND],
                        dst=[base + TARGET_UNCOND, base + TARGET_COND], what=tensors)
    return over_steps(rw, num_steps, window)


def check_p2p_prompts(tokenizer, source: str, target: str) -> None:
    """Raise :class:`EditError` unless the prompts tokenize to the same length (P2P's token-aligned maps)."""
    ids = [list(tokenizer(text, truncation=False).input_ids) for text in (source, target)]
    if len(ids[0]) != len(ids[1]):
        raise EditError(
            f"p2p injects the source's cross-attention map token by token, so the prompts must align: the source "
            f"has {len(ids[0])} tokens and the target {len(ids[1])}. Swap words one for one (e.g. 'red' -> 'blue') "
            "with words of the same token count, or use --method ieadapt, which needs no alignment"
        )
