"""What a perturbation sweep generates: prompts x seeds x targets x modes, plus one baseline per prompt and seed.

    definition = SweepDefinition(prompts=load_prompts("vbench"), targets=("each", "blocks"), modes=("I", "U", "0.5"))
    baselines, perturbed = expand(definition, unet.site_table)

**Targets** (where the attention maps are replaced), each a string ``NAME[:ARG...]``:

| target | sites it perturbs (together, in one video) |
| --- | --- |
| ``each[:KIND]`` | every site of KIND singly: one configuration per site (the paper's 2n videos per prompt) |
| ``site:NAME`` | the one site NAME (a diffusers module path; ``python -m ieadapt_jax.sweep sites`` lists them) |
| ``kind:KIND`` | all sites of KIND at once (``kind:spatial`` vs ``kind:temporal``) |
| ``block:PREFIX[:KIND]`` | the KIND sites under a module path prefix: ``down``, ``mid``, ``up``, ``down_blocks.1``, ``up_blocks.2.motion_modules`` |
| ``blocks[:KIND]`` | one ``block:`` target per down/mid/up block and per block's sub-modules (``attentions``, ``motion_modules``) |
| ``entropy:top:PCT[:KIND]`` / ``entropy:bottom:PCT[:KIND]`` | the PCT% KIND sites of highest / lowest entropy in this prompt and seed's baseline |
| ``regex:PATTERN`` | the KIND=self sites whose name matches PATTERN (``re.search``) |

KIND is ``self`` (spatial and temporal self-attention; the default), ``spatial``, ``temporal``, ``cross`` (only
mode U: the identity map needs N_q = N_k) or ``all``. ``each``, ``blocks`` and ``regex`` expand when the
sweep is defined; ``entropy:`` targets are resolved per prompt and seed from the baseline's recorded entropy
(mean over steps, conditional row), so they need records (``record="self"``).

**Modes**: ``I`` (identity: the output is V), ``U`` (uniform: the mean of V), or a number α in [0, 1] for
α·I + (1−α)·U (supplementary §7.2). The baseline is mode ``A`` (unchanged) with target ``baseline``.

**Rows**: with classifier-free guidance each video is two model rows (φ and c). ``perturb_rows="both"``
perturbs both, as swapping attention processors in diffusers does; ``"cond"`` only the conditional row.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from ..core.errors import IEAdaptError
from ..core.rewiring import Rewiring, RewiringError, check_window, mode_mix, noop, over_steps, perturb
from ..core.sites import SiteError, SiteTable
from ..guidance import guidance_rows
from ..toy import world

BASELINE = "baseline"
KIND_ALIASES = {
    "self": ("spatial_self", "temporal", "joint"),
    "spatial": ("spatial_self",),
    "spatial_self": ("spatial_self",),
    "temporal": ("temporal",),
    "cross": ("cross",),
    "joint": ("joint",),
    "all": ("spatial_self", "cross", "temporal", "joint"),
}
VBENCH_PROMPTS = "vbench_aesthetic_prompts.txt"
TOY_PROMPT_KEY = 0  # jax.random.key of the toy captions ("toy:N")


class SweepDefinitionError(IEAdaptError):
    """A sweep definition that cannot be built: unknown target or mode, empty selection, bad prompts file."""


@dataclasses.dataclass(frozen=True)
class SweepDefinition:
    """Everything that decides a sweep's videos (module docstring). Two sweeps with equal definitions and
    models give equal results; resuming checks it.

    Fields:
        prompts: the prompts, in order (their position is the ``prompt_index`` of results).
        seeds: seeds of the initial noise (the paper: 42).
        targets: target strings (module docstring).
        modes: "I", "U" or α strings such as "0.5".
        num_frames, height, width: video size in pixels.
        num_inference_steps: denoising steps (the paper: 25).
        guidance_scale: classifier-free guidance ω (the paper: 9.0 for AnimateDiff).
        negative_prompt: the prompt φ of the unconditional row.
        scheduler: "model" (the snapshot's scheduler config), "ddim" or "euler" (the paper's AnimateDiff setting).
        eta: DDIM's eta (0: deterministic).
        perturb_rows: "both" CFG rows or only "cond".
        window: perturb only at steps in [start, stop), or None for every step.
        record: "self" records entropy and energy of every self-attention site in every video; "none" records
            nothing (faster; ``entropy:`` targets and the entropy/energy plots need records).
    """

    prompts: tuple[str, ...]
    seeds: tuple[int, ...] = (42,)
    targets: tuple[str, ...] = ("each",)
    modes: tuple[str, ...] = ("I", "U")
    num_frames: int = 16
    height: int = 512
    width: int = 512
    num_inference_steps: int = 25
    guidance_scale: float = 9.0
    negative_prompt: str = ""
    scheduler: str = "model"
    eta: float = 0.0
    perturb_rows: str = "both"
    window: tuple[int, int] | None = None
    record: str = "self"

    def __post_init__(self):
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "modes", tuple(canonical_mode(m) for m in self.modes))
        if self.window is not None:
            object.__setattr__(self, "window", tuple(int(w) for w in self.window))
        if not self.prompts:
            raise SweepDefinitionError("a sweep needs at least one prompt")
        if not self.seeds:
            raise SweepDefinitionError("a sweep needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise SweepDefinitionError(f"seeds repeat: {list(self.seeds)}")
        if not self.targets or not self.modes:
            raise SweepDefinitionError("a sweep needs at least one target and one mode")
        if len(set(self.modes)) != len(self.modes):
            raise SweepDefinitionError(f"modes repeat: {list(self.modes)} (α = 1 is I and α = 0 is U)")
        if self.scheduler not in ("model", "ddim", "euler"):
            raise SweepDefinitionError(f"scheduler {self.scheduler!r}: use 'model', 'ddim' or 'euler'")
        if self.perturb_rows not in ("both", "cond"):
            raise SweepDefinitionError(f"perturb_rows {self.perturb_rows!r}: use 'both' or 'cond'")
        if self.record not in ("self", "none"):
            raise SweepDefinitionError(f"record {self.record!r}: use 'self' or 'none'")
        for name in ("num_inference_steps", "num_frames", "height", "width"):
            value = getattr(self, name)
            if value < 1:
                raise SweepDefinitionError(f"{name} must be a positive integer, got {value!r}")
        check_window(self.window, self.num_inference_steps, what="window", error=SweepDefinitionError)
        for target in self.targets:
            parse_target(target)

    @property
    def rows(self) -> tuple[tuple[str, str], ...]:
        """(text, mode) of the model rows of one video: ("uncond", "A"), ("cond", "A"); only cond when ω = 1."""
        return guidance_rows("cfg", self.guidance_scale)[0]

    @property
    def weights(self) -> np.ndarray:
        """float32 [R]: the CFG combination weights of the rows."""
        return guidance_rows("cfg", self.guidance_scale)[1]

    def as_dict(self) -> dict:
        """A JSON-able dict of every field (the sweep manifest)."""
        out = dataclasses.asdict(self)
        out["prompts"] = list(self.prompts)
        out["seeds"] = list(self.seeds)
        out["targets"] = list(self.targets)
        out["modes"] = list(self.modes)
        out["window"] = None if self.window is None else list(self.window)
        return out


@dataclasses.dataclass(frozen=True)
class Config:
    """One video of a sweep.

    Fields:
        index: position in the sweep's order (baselines first, then by prompt, seed, target, mode).
        key: a unique, stable name, e.g. ``p0003/s42/site:up_blocks.3.attentions.2.transformer_blocks.0.attn1/I``.
        prompt_index, seed: which prompt and noise.
        target: "baseline" or a target string (``each`` expanded to ``site:NAME``).
        mode: "A" (baseline), "I", "U" or α.
        sites: perturbed site positions, or None while an ``entropy:`` target awaits its baseline.
    """

    index: int
    key: str
    prompt_index: int
    seed: int
    target: str
    mode: str
    sites: tuple[int, ...] | None


def canonical_mode(mode) -> str:
    """"I", "U" or the α of α·I + (1−α)·U as a short string ("0.5"); raises for anything else."""
    text = str(mode).strip()
    if text.upper() in ("I", "U"):
        return text.upper()
    try:
        alpha = float(text)
    except ValueError:
        raise SweepDefinitionError(f"unknown mode {mode!r}: use I, U or a number α in [0, 1] for α·I + (1−α)·U") from None
    try:
        mode_mix(alpha)
    except RewiringError as e:
        raise SweepDefinitionError(str(e)) from None
    return {0.0: "U", 1.0: "I"}.get(alpha, repr(alpha))


def parse_target(target: str) -> tuple[str, tuple[str, ...]]:
    """(name, arguments) of a target string, checked for form (module docstring)."""
    if not isinstance(target, str) or not target:
        raise SweepDefinitionError(f"a target must be a non-empty string, got {target!r}")
    name, _, rest = target.partition(":")
    if name == "regex":
        if not rest:
            raise SweepDefinitionError("target 'regex:PATTERN' needs a pattern")
        try:
            re.compile(rest)
        except re.error as e:
            raise SweepDefinitionError(f"target {target!r}: bad regex: {e}") from None
        return name, (rest,)
    if name == "site":
        if not rest:
            raise SweepDefinitionError("target 'site:NAME' needs a site name")
        return name, (rest,)
    args = tuple(rest.split(":")) if rest else ()
    arity = {"each": (0, 1), "kind": (1, 1), "block": (1, 2), "blocks": (0, 1), "entropy": (2, 3)}
    if name not in arity:
        raise SweepDefinitionError(
            f"unknown target {target!r}; targets are each[:KIND], site:NAME, kind:KIND, block:PREFIX[:KIND], "
            "blocks[:KIND], entropy:top|bottom:PCT[:KIND], regex:PATTERN")
    low, high = arity[name]
    if not low <= len(args) <= high:
        raise SweepDefinitionError(f"target {target!r}: {name} takes {low} to {high} ':'-separated arguments")
    kind = {"each": 0, "kind": 0, "block": 1, "blocks": 0, "entropy": 2}[name]
    if len(args) > kind:
        _kinds(args[kind], target)
    if name == "entropy":
        if args[0] not in ("top", "bottom"):
            raise SweepDefinitionError(f"target {target!r}: use entropy:top:PCT or entropy:bottom:PCT")
        try:
            pct = float(args[1])
        except ValueError:
            pct = -1.0
        if not 0.0 < pct <= 100.0:
            raise SweepDefinitionError(f"target {target!r}: PCT must be a number in (0, 100]")
    return name, args


def _kinds(kind: str, target: str) -> tuple[str, ...]:
    if kind not in KIND_ALIASES:
        raise SweepDefinitionError(f"target {target!r}: unknown kind {kind!r}; kinds are {', '.join(KIND_ALIASES)}")
    return KIND_ALIASES[kind]


def expand_targets(targets: Sequence[str], table: SiteTable) -> list[tuple[str, tuple[int, ...] | None]]:
    """(target, sites) for each concrete target: ``each`` and ``blocks`` expanded; ``entropy:`` left unresolved
    (sites None). Every target must select at least one site of the table."""
    out: list[tuple[str, tuple[int, ...] | None]] = []
    for target in targets:
        name, args = parse_target(target)
        kinds = _kinds(args[-1], target) if name in ("each", "blocks") and args else KIND_ALIASES["self"]
        if name == "each":
            chosen = table.select(kind=list(kinds))
            if not chosen:
                raise SweepDefinitionError(f"target {target!r} selects no site: the model has no {'/'.join(kinds)} site")
            out += [(f"site:{table[s].name}", (s,)) for s in chosen]
        elif name == "blocks":
            for prefix in _block_prefixes(table):
                sites = tuple(table.select(kind=list(kinds), block=prefix))
                if sites:
                    out.append((f"block:{prefix}" + (f":{args[0]}" if args else ""), sites))
        elif name == "entropy":
            out.append((target, None))
        else:
            out.append((target, resolve_target(target, table)))
    keys = [t for t, _ in out]
    repeated = sorted({t for t in keys if keys.count(t) > 1})
    if repeated:
        raise SweepDefinitionError(f"targets repeat after expansion: {repeated}")
    return out


def _block_prefixes(table: SiteTable) -> list[str]:
    """Module prefixes of the UNet's blocks in forward order: the groups (down, mid, up), each
    down_blocks.i / up_blocks.i, then each block's ``attentions`` and ``motion_modules`` sub-modules."""
    group_of = {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}
    groups: list[str] = []
    blocks: list[str] = []
    subs: list[str] = []
    for name in table.names:
        parts = name.split(".")
        if parts[0] not in group_of:
            continue
        depth = 1 if parts[0] == "mid_block" else 2  # mid_block.attentions.0... vs up_blocks.3.attentions.0...
        block, sub = ".".join(parts[:depth]), ".".join(parts[:depth + 1])
        for seq, item in ((groups, group_of[parts[0]]), (blocks, block), (subs, sub)):
            if item not in seq:
                seq.append(item)
    blocks = [b for b in blocks if b != "mid_block"]  # the same sites as the group "mid"
    return groups + blocks + [s for s in subs if s.rsplit(".", 1)[1] in ("attentions", "motion_modules")]


def resolve_target(target: str, table: SiteTable, entropy: np.ndarray | None = None) -> tuple[int, ...]:
    """Site positions of one concrete target (not ``each``/``blocks``); ``entropy:`` targets need ``entropy``
    ([sites] per-site entropy of the baseline, NaN where not recorded)."""
    name, args = parse_target(target)
    try:
        if name == "site":
            chosen = [table.index(args[0])]
        elif name == "kind":
            chosen = table.select(kind=list(_kinds(args[0], target)))
        elif name == "block":
            kinds = _kinds(args[1], target) if len(args) > 1 else KIND_ALIASES["self"]
            chosen = table.select(kind=list(kinds), block=args[0])
        elif name == "regex":
            chosen = table.select(kind=list(KIND_ALIASES["self"]), regex=args[0])
        elif name == "entropy":
            if entropy is None:
                raise SweepDefinitionError(f"target {target!r} needs the baseline's entropy per site (record='self')")
            kinds = list(_kinds(args[2], target)) if len(args) > 2 else list(KIND_ALIASES["self"])
            chosen = table.by_entropy(entropy, float(args[1]) / 100.0, lowest=args[0] == "bottom", kind=kinds)
        else:
            raise SweepDefinitionError(f"target {target!r} expands to several targets; use expand_targets")
    except SiteError as e:
        raise SweepDefinitionError(f"target {target!r}: {e}") from None
    if not chosen:
        raise SweepDefinitionError(f"target {target!r} selects no site of the model")
    return tuple(chosen)


def expand(definition: SweepDefinition, table: SiteTable) -> tuple[list[Config], list[Config]]:
    """(baselines, perturbed configurations) of a sweep, in sweep order, checked against the model's sites.

    Raises:
        SweepDefinitionError: a target selects nothing, repeats, or asks for I/α at cross-attention sites;
            ``entropy:`` targets without records.
    """
    targets = expand_targets(definition.targets, table)
    if definition.record == "none" and any(sites is None for _, sites in targets):
        raise SweepDefinitionError("entropy: targets need the baseline's records: use record='self'")
    for target, sites in targets:
        if sites is not None:
            for mode in definition.modes:
                check_mode(table, target, sites, mode)
    baselines, perturbed = [], []
    for p in range(len(definition.prompts)):
        for seed in definition.seeds:
            baselines.append((p, seed, BASELINE, "A", ()))
            perturbed += [(p, seed, target, mode, sites) for target, sites in targets for mode in definition.modes]
    configs = [Config(i, config_key(p, s, t, m), p, s, t, m, sites)
               for i, (p, s, t, m, sites) in enumerate(baselines + perturbed)]
    return configs[:len(baselines)], configs[len(baselines):]


def config_key(prompt_index: int, seed: int, target: str, mode: str) -> str:
    """The stable name of a configuration (see :class:`Config`)."""
    return f"p{prompt_index:04d}/s{seed}/{target}/{mode}"


def check_mode(table: SiteTable, target: str, sites: Sequence[int], mode: str) -> None:
    """Raise unless ``mode`` can be applied at ``sites`` (I and α need self-attention)."""
    if mode_mix(mode if mode in ("A", "I", "U") else float(mode))[1] != 0.0:
        cross = [table[s].name for s in sites if not table[s].is_self]
        if cross:
            raise SweepDefinitionError(
                f"target {target!r} with mode {mode}: the identity map needs self-attention, but these sites are "
                f"cross-attention: {cross[:4]}{' ...' if len(cross) > 4 else ''}; use mode U there")


def config_rewiring(definition: SweepDefinition, table: SiteTable, config: Config) -> Rewiring:
    """The [steps, sites, R] rewiring schedule of one configuration (the baseline's changes nothing)."""
    rows = definition.rows
    rw = noop(table, len(rows))
    if config.mode != "A":
        if config.sites is None:
            raise SweepDefinitionError(f"configuration {config.key} is not resolved yet (its baseline's entropy)")
        perturbed = [r for r, (text, _) in enumerate(rows) if definition.perturb_rows == "both" or text == "cond"]
        mode = config.mode if config.mode in ("I", "U") else float(config.mode)
        rw = perturb(rw, table, list(config.sites), mode, rows=perturbed)
    return over_steps(rw, definition.num_inference_steps, definition.window)


def load_prompts(source: str | os.PathLike, limit: int | None = None) -> tuple[str, ...]:
    """Prompts from ``"vbench"`` (the 93 VBench aesthetic-quality prompts shipped with the package),
    ``"toy:N"`` (N toy-world captions, drawn with a fixed key from the training split), or a text file
    (one prompt per line; blank lines and lines starting with ``#`` are skipped). ``limit`` keeps the first ones.
    """
    text_source = str(source)
    if text_source == "vbench":
        text = importlib.resources.files("ieadapt_jax").joinpath("data", VBENCH_PROMPTS).read_text(encoding="utf-8")
        prompts = _prompt_lines(text)
    elif text_source.startswith("toy:"):
        prompts = toy_prompts(_positive_int(text_source[4:], source))
    else:
        path = Path(source)
        if not path.is_file():
            raise SweepDefinitionError(f"prompts {text_source!r}: no such file (or use 'vbench' or 'toy:N')")
        prompts = _prompt_lines(path.read_text(encoding="utf-8"))
        if not prompts:
            raise SweepDefinitionError(f"prompts file {path} has no prompt lines")
    if limit is not None:
        prompts = prompts[:_positive_int(str(limit), "limit")]
    return tuple(prompts)


def toy_prompts(count: int) -> tuple[str, ...]:
    """``count`` single-object toy captions of the training split, the same for every call."""

    attrs = world.train_attributes(jax.random.key(TOY_PROMPT_KEY), count)
    return tuple(world.caption(attrs))


def _prompt_lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _positive_int(text: str, what) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SweepDefinitionError(f"{what}: expected a positive integer, got {text!r}")
    return value
