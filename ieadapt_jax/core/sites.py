"""Attention sites: the ordered table of every attention call a model makes, and selectors over it.

A site is named by its diffusers module path (``down_blocks.0.attentions.0.transformer_blocks.0.attn1``).
Its kind says what it attends over:

- ``spatial_self``: pixels of one frame attend to pixels of the same frame;
- ``cross``: pixels attend to text tokens (N_q != N_k: the identity map is not defined);
- ``temporal``: each pixel attends to the same pixel in the other frames;
- ``joint``: text and video tokens attend to each other (CogVideoX).

``kind_index`` counts sites of the same kind in forward order from 0, so the paper's "spatial layer 16"
(1-based) is ``table.select(kind="spatial_self", index=[15])``.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Iterable, Sequence

import numpy as np

from .errors import IEAdaptError

KINDS = ("spatial_self", "cross", "temporal", "joint")
SELF_KINDS = ("spatial_self", "temporal", "joint")
# how tables, plots and summaries name each kind
KIND_LABELS = {"spatial_self": "spatial", "temporal": "temporal", "cross": "cross", "joint": "joint"}
_BLOCK_ALIASES = {"down": "down_blocks", "mid": "mid_block", "up": "up_blocks"}


class SiteError(IEAdaptError):
    """A site selection or rewiring names something that does not exist or is not allowed."""


@dataclasses.dataclass(frozen=True)
class Site:
    """One attention call of a model, in forward order."""

    name: str
    kind: str
    heads: int
    head_dim: int
    kind_index: int = -1

    @property
    def is_self(self) -> bool:
        """True where queries and keys are the same tokens (the identity map exists)."""
        return self.kind in SELF_KINDS


@dataclasses.dataclass(frozen=True)
class SiteTable:
    """The ordered attention sites of a model; index = position in forward order."""

    sites: tuple[Site, ...]

    @classmethod
    def build(cls, entries: Iterable[tuple[str, str, int, int]]) -> "SiteTable":
        """Build from ``(name, kind, heads, head_dim)`` in forward order; assigns ``kind_index``."""
        counts: dict[str, int] = {}
        sites = []
        for name, kind, heads, head_dim in entries:
            if kind not in KINDS:
                raise SiteError(f"site {name!r}: unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
            sites.append(Site(name, kind, int(heads), int(head_dim), counts.get(kind, 0)))
            counts[kind] = counts.get(kind, 0) + 1
        names = [s.name for s in sites]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise SiteError(f"duplicate site names: {dup}")
        return cls(tuple(sites))

    def __len__(self) -> int:
        return len(self.sites)

    def __iter__(self):
        return iter(self.sites)

    def __getitem__(self, i: int) -> Site:
        return self.sites[i]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    def index(self, name: str) -> int:
        """Position of the site called ``name``; an unknown name lists the valid ones."""
        for i, s in enumerate(self.sites):
            if s.name == name:
                return i
        raise SiteError(_unknown_site_message(name, self.names))

    def select(
        self,
        names: str | Sequence[str] | None = None,
        *,
        kind: str | Sequence[str] | None = None,
        block: str | None = None,
        regex: str | None = None,
        index: int | Sequence[int] | None = None,
    ) -> list[int]:
        """Site positions matching every given criterion, in forward order.

        names: exact site names (each must exist). kind: one kind or several; "self" means every
        self-attention kind. block: a module-path prefix such as "down_blocks.1" or "up" / "mid" /
        "down". regex: searched in the name. index: positions within ``kind`` when one kind is given
        (the paper's per-kind layer numbers, 0-based), else global positions.
        """
        chosen = list(range(len(self.sites)))
        if names is not None:
            names = [names] if isinstance(names, str) else list(names)
            wanted = {self.index(n) for n in names}
            chosen = [i for i in chosen if i in wanted]
        kinds = None
        if kind is not None:
            kinds = _resolve_kinds(kind)
            chosen = [i for i in chosen if self.sites[i].kind in kinds]
        if block is not None:
            prefix = _BLOCK_ALIASES.get(block, block)
            chosen = [i for i in chosen if self.sites[i].name == prefix or self.sites[i].name.startswith(prefix + ".")]
            if not chosen:
                blocks = sorted({".".join(s.name.split(".")[:2]) for s in self.sites})
                raise SiteError(f"block {block!r} matches no site; blocks: {', '.join(blocks)}")
        if regex is not None:
            try:
                pattern = re.compile(regex)
            except re.error as e:
                raise SiteError(f"bad site regex {regex!r}: {e}") from None
            chosen = [i for i in chosen if pattern.search(self.sites[i].name)]
        if index is not None:
            idx = [index] if isinstance(index, (int, np.integer)) else list(index)
            if kinds is not None and len(kinds) == 1:
                (k,) = kinds
                count = sum(1 for s in self.sites if s.kind == k)
                _check_range(idx, count, f"{k} index")
                chosen = [i for i in chosen if self.sites[i].kind_index in set(idx)]
            else:
                _check_range(idx, len(self.sites), "site index")
                chosen = [i for i in chosen if i in set(idx)]
        return chosen

    def by_entropy(
        self,
        entropy: np.ndarray,
        fraction: float,
        *,
        lowest: bool = True,
        kind: str | Sequence[str] | None = "self",
    ) -> list[int]:
        """The ``fraction`` of sites (of ``kind``) with the lowest (or highest) entropy, in forward order.

        entropy: [sites] per-site entropy of this table (e.g. a profiling pass averaged over rows).
        At least one site is chosen for any fraction in (0, 1]; ties break by forward order.
        """
        entropy = np.asarray(entropy, dtype=np.float64)
        if entropy.shape != (len(self.sites),):
            raise SiteError(f"entropy must have shape [{len(self.sites)}] (one value per site), got {list(entropy.shape)}")
        if not 0.0 < fraction <= 1.0:
            raise SiteError(f"entropy fraction must be in (0, 1], got {fraction}")
        pool = self.select(kind=kind) if kind is not None else list(range(len(self.sites)))
        if not pool:
            raise SiteError(f"no site of kind {kind!r} to rank")
        count = max(1, int(round(fraction * len(pool))))
        key = entropy[pool] if lowest else -entropy[pool]
        order = np.argsort(key, kind="stable")
        return sorted(pool[j] for j in order[:count])

    def argmax_entropy(self, entropy: np.ndarray, *, kind: str | Sequence[str] | None = "self") -> int:
        """The site (of ``kind``) with the highest entropy: the paper's Eq. 3 registry."""
        return self.by_entropy(entropy, 1.0 / max(1, len(self.select(kind=kind))), lowest=False, kind=kind)[0]

    def recording(self, record) -> tuple[int, ...]:
        """Resolve a model's ``record=`` argument to the positions that record, in forward order.

        False/None: none. True: every site. A kind ("self", "spatial_self", ...), a site name, or a
        list of those / of positions.
        """
        if record is None or record is False:
            return ()
        if record is True:
            return tuple(range(len(self.sites)))
        items = [record] if isinstance(record, (str, int, np.integer)) else list(record)
        out: set[int] = set()
        for item in items:
            if isinstance(item, (int, np.integer)):
                _check_range([int(item)], len(self.sites), "site index")
                out.add(int(item))
            elif item == "self" or item in KINDS:
                out.update(self.select(kind=item))
            else:
                out.add(self.index(item))
        return tuple(sorted(out))


def _resolve_kinds(kind) -> set[str]:
    kinds = [kind] if isinstance(kind, str) else list(kind)
    out: set[str] = set()
    for k in kinds:
        if k == "self":
            out.update(SELF_KINDS)
        elif k in KINDS:
            out.add(k)
        else:
            raise SiteError(f"unknown site kind {k!r}; kinds are self, {', '.join(KINDS)}")
    return out


def _check_range(idx: Sequence[int], count: int, what: str) -> None:
    bad = [i for i in idx if not 0 <= int(i) < count]
    if bad:
        raise SiteError(f"{what} {bad} out of range: there are {count} (valid 0..{count - 1})")


def _unknown_site_message(name: str, names: Sequence[str]) -> str:

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = "\n  ".join(names)
    return f"unknown site {name!r}.{hint} Valid sites ({len(names)}):\n  {listing}"
