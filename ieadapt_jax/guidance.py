"""IE-Adapt quality guidance (paper §4.1, Eq. 3–5; supplementary Eq. 6) as rows and weights.

Every guidance formula here has the form

    ε = ε(φ,A) + ω·(ε(pos) − ε(neg)) + λ·(ε(plus) − ε(minus))

where each ε(text, mode) is one model row: text φ (the negative prompt) or c (the prompt), and the
attention at the registered sites left as is (A) or replaced by the identity (I) or uniform (U) map.
A preset names (pos, neg, plus, minus); :func:`guidance_rows` expands it into the distinct rows and
their weights (a row of the sampling loop's W), merging identical rows and dropping rows of weight 0,
so only distinct rows are ever computed (ε(c,A) is reused).

| preset | ω term | λ term | note |
| --- | --- | --- | --- |
| cfg | cA − φA | — | classifier-free guidance |
| A-I | cA − φA | cA − cI | Eq. 5 [A−I]; PAG (Ahn et al.) |
| U-A | cA − φA | cU − cA | Eq. 5 [U−A] |
| U-I | cA − φA | cU − cI | Eq. 5 [U−I], the paper's §4.1 default |
| strategy1 | cA − φI | — | Eq. 6 |
| strategy2 | cA − φA | cA − cI | Eq. 6 (= A-I) |
| strategy3 | cU − φA | cA − cI | Eq. 6 |
| strategy4 | cU − φA | — | Eq. 6 |

Registered sites (Eq. 3): by default the self-attention site of maximum entropy, found by one recording
forward of the conditional row at the first step (:func:`profile_entropy`); or sites the user names.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .core.errors import IEAdaptError
from .core.jit import jit_method
from .core.protocols import Denoiser
from .core.rewiring import (
    Rewiring,
    SiteSpec,
    check_window,
    noop,
    over_steps,
    perturb,
    resolve_sites,
)
from .core.sites import SiteError, SiteTable

Row = tuple[str, str]  # (text, mode): text "uncond" (φ) or "cond" (c); mode "A", "I" or "U"
UNCOND_A: Row = ("uncond", "A")

# preset -> (pos, neg, plus, minus); plus/minus None: no λ term.
PRESETS: dict[str, tuple[Row, Row, Row | None, Row | None]] = {
    "cfg": (("cond", "A"), ("uncond", "A"), None, None),
    "A-I": (("cond", "A"), ("uncond", "A"), ("cond", "A"), ("cond", "I")),
    "U-A": (("cond", "A"), ("uncond", "A"), ("cond", "U"), ("cond", "A")),
    "U-I": (("cond", "A"), ("uncond", "A"), ("cond", "U"), ("cond", "I")),
    "strategy1": (("cond", "A"), ("uncond", "I"), None, None),
    "strategy2": (("cond", "A"), ("uncond", "A"), ("cond", "A"), ("cond", "I")),
    "strategy3": (("cond", "U"), ("uncond", "A"), ("cond", "A"), ("cond", "I")),
    "strategy4": (("cond", "U"), ("uncond", "A"), None, None),
}
PRESET_ALIASES = {"pag": "A-I", "[A-I]": "A-I", "[U-A]": "U-A", "[U-I]": "U-I"}


class GuidanceError(IEAdaptError):
    """A guidance request that cannot be built (unknown preset, no sites, bad window, ...)."""


def preset_name(preset: str) -> str:
    """The canonical name of ``preset`` (aliases: "pag", "[A-I]", "[U-A]", "[U-I]")."""
    name = PRESET_ALIASES.get(preset, preset)
    if name not in PRESETS:
        choices = ", ".join(list(PRESETS) + list(PRESET_ALIASES))
        raise GuidanceError(f"unknown guidance preset {preset!r}; choose one of {choices}")
    return name


@dataclasses.dataclass(frozen=True)
class Guidance:
    """An IE-Adapt guidance request for :func:`ieadapt_jax.text_to_video`.

    Fields:
        preset: one of :data:`PRESETS` (or an alias: "pag" is "A-I"); see the module docstring.
        scale: λ, the weight of the (plus − minus) term; unused by presets without one.
        sites: the registered sites (names or positions), or None for Eq. 3: the site of maximum entropy
            among ``kind`` sites, found by a profiling forward of the conditional row at the first step.
        kind: the site kind Eq. 3 ranks ("self": spatial and temporal self-attention; "spatial_self";
            "temporal").
        window: perturb only at steps in [start, stop) (None: every step); outside it the perturbed rows
            equal ε(c,A) / ε(φ,A), so the λ term vanishes.
    """

    preset: str = "U-I"
    scale: float = 1.0
    sites: SiteSpec | None = None
    kind: str = "self"
    window: tuple[int, int] | None = None

    def __post_init__(self):
        preset_name(self.preset)
        if self.sites is not None and not isinstance(self.sites, (int, str, np.integer)) and len(self.sites) == 0:
            raise GuidanceError(
                "Guidance(sites=[]) registers no site, so the perturbed rows (λ and I/U terms) would equal the "
                "unperturbed ones; name at least one site, or sites=None for the max-entropy site (Eq. 3)"
            )
        check_window(self.window, what="guidance window", error=GuidanceError)


def guidance_rows(preset: str, omega: float, lam: float = 0.0) -> tuple[tuple[Row, ...], np.ndarray]:
    """The distinct model rows of a preset and their weights for ω = ``omega`` and λ = ``lam``.

    Terms φA·1, pos·ω, neg·(−ω), plus·λ, minus·(−λ) are merged by row (first-appearance order) and rows
    whose weight is exactly 0 are dropped. Returns (rows, weights float32 [R]); the weights sum to 1.
    """
    pos, neg, plus, minus = PRESETS[preset_name(preset)]
    terms = [(UNCOND_A, 1.0), (pos, float(omega)), (neg, -float(omega))]
    if plus is not None:
        terms += [(plus, float(lam)), (minus, -float(lam))]
    merged: dict[Row, float] = {}
    for row, weight in terms:
        merged[row] = merged.get(row, 0.0) + weight
    rows = tuple(row for row, weight in merged.items() if weight != 0.0)
    return rows, np.asarray([merged[row] for row in rows], np.float32)


def perturbs(rows: Sequence[Row]) -> bool:
    """Whether any row replaces the attention map (needs registered sites)."""
    return any(mode != "A" for _, mode in rows)


def guidance_rewiring(
    table: SiteTable, rows: Sequence[Row], sites: Sequence[int], num_steps: int, window: tuple[int, int] | None = None
) -> Rewiring:
    """The [steps, sites, R] schedule that applies each row's mode (I / U) at ``sites`` inside ``window``."""
    check_window(window, num_steps, what="guidance window", error=GuidanceError)
    rw = noop(table, len(rows))
    for r, (_, mode) in enumerate(rows):
        if mode != "A":
            rw = perturb(rw, table, list(sites), mode, rows=[r])
    return over_steps(rw, num_steps, window)


def profile_entropy(unet: Denoiser, sample: jax.Array, timestep, text: jax.Array, *, kind: str = "self", backend: str = "auto") -> np.ndarray:
    """Eq. 3's profiling pass: one recording forward; entropy per site of the table (NaN where not recorded).

    Args:
        unet: a :class:`models.UNetMotionModel`.
        sample: [1, F, H, W, C] model input (the conditional row at the first step, after scale_model_input).
        timestep: the first step's timestep.
        text: [1, L, D] the prompt's text states.
        kind: which sites record (a ``SiteTable.recording`` kind).
    """
    table = unet.site_table
    recorded = table.recording(kind)
    if not recorded:
        raise SiteError(f"the model has no {kind!r} attention site to profile")
    rec = _recording_forward(unet, sample, jnp.asarray(timestep).reshape(1), text, kind=kind, backend=backend)
    entropy = np.full(len(table), np.nan)
    entropy[list(recorded)] = np.asarray(rec.entropy[:, 0], np.float64)
    return entropy


def register_sites(table: SiteTable, guidance: Guidance, entropy: np.ndarray | None) -> tuple[int, ...]:
    """The registered sites: ``guidance.sites`` resolved, else Eq. 3's argmax of ``entropy`` over ``guidance.kind``."""
    if guidance.sites is not None:
        return tuple(resolve_sites(table, guidance.sites))
    if entropy is None:
        raise GuidanceError("Eq. 3 needs the profiled entropy per site (profile_entropy) when no sites are named")
    return (table.argmax_entropy(entropy, kind=guidance.kind),)


@jit_method(static_argnames=("kind", "backend"), announce="the entropy-profiling forward")
def _recording_forward(unet, sample, timesteps, text, *, kind, backend):
    _, rec = unet(sample, timesteps, text, record=kind, backend=backend)
    return rec


def dynamic_cfg_scales(timesteps, guidance_scale: float) -> np.ndarray:
    """[steps] float32 ω per step of CogVideoX's dynamic CFG (diffusers' ``use_dynamic_cfg``).

    ω_t = 1 + g·(1 − cos(π·((n − t)/n)⁵))/2 with g = ``guidance_scale``, n the number of steps and t the raw
    timestep (e.g. 999), exactly as diffusers' CogVideoXPipeline computes it (a quirk kept for parity).
    """
    ts = [int(t) for t in np.asarray(timesteps).reshape(-1)]
    n = len(ts)
    return np.asarray(
        [1 + guidance_scale * (1 - math.cos(math.pi * ((n - t) / n) ** 5.0)) / 2 for t in ts], np.float32
    )


def guidance_rows_over_steps(preset: str, omegas, lam: float = 0.0) -> tuple[tuple[Row, ...], np.ndarray]:
    """:func:`guidance_rows` with one ω per step: the rows any step needs and their weights [steps, R].

    A row that some step weighs 0 keeps weight 0 there; rows no step needs are dropped.
    """
    per_step = [dict(zip(*guidance_rows(preset, float(omega), lam))) for omega in np.asarray(omegas).reshape(-1)]
    if not per_step:
        raise GuidanceError("guidance_rows_over_steps needs at least one step")
    rows: list[Row] = []
    for weights in per_step:
        rows += [row for row in weights if row not in rows]
    table = np.asarray([[weights.get(row, 0.0) for row in rows] for weights in per_step], np.float32)
    return tuple(rows), table
