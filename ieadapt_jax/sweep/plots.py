"""The figures of a sweep report (matplotlib, written as PNG; the video grid also as an animated GIF).

Each function takes the tables of :func:`ieadapt_jax.sweep.report.tables` and writes one figure, or nothing
when the sweep lacks what it shows (e.g. no α modes: no α figure). :func:`write_all` writes them all. Layers
are the tables' ``layer``: the API's 0-based index of a site within its kind.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import video_io
from ..core.sites import KIND_LABELS
from .engine import thumbnail

MODE_COLOURS = {"I": "tab:red", "U": "tab:blue", "A": "tab:gray"}
GRID_LAYERS = 16  # perturbed videos per row of the video grid (AnimateDiff has 16 spatial self-attention layers)
GIF_CELL = 64  # px per video in the grid's GIF
KIND_ORDER = ("spatial_self", "temporal", "joint", "cross")


def _plt():
    import matplotlib  # deferred: matplotlib takes about a second to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib takes about a second to import

    return plt


def _modes(frame) -> list[str]:
    """Modes in display order: I, then α from high to low, then U."""
    modes = [m for m in frame["mode"].unique() if m != "A"]
    return sorted(modes, key=lambda m: -{"I": 1.0, "U": 0.0}.get(m, float(m) if m not in ("I", "U") else 0.0))


def _colour(mode: str, modes: list[str]):
    if mode in MODE_COLOURS:
        return MODE_COLOURS[mode]
    import matplotlib  # deferred: matplotlib takes about a second to import

    return matplotlib.colormaps["viridis"](float(mode))


def _kinds(frame) -> list[str]:
    return [k for k in KIND_ORDER if k in set(frame["kind"])]


def metric_columns(results, manifest: dict) -> list[str]:
    """The columns the per-site figures show: pairwise metrics, then the shifts of the others."""
    out = []
    for metric in manifest["metrics"].values():
        out += [c if metric["pairwise"] else f"{c}_shift" for c in metric["columns"]]
    return [c for c in out if c in results]


def _finite(series):
    return series.replace([np.inf, -np.inf], np.nan)


def site_shifts(results, manifest: dict, path: Path) -> Path | None:
    """Figures 2 / 16: per layer, mean (± std over prompts and seeds) of each metric under each mode;
    one column per kind (spatial, temporal), a first row of the baseline's entropy percentage."""
    single = results[(results["target_type"] == "site") & (results["mode"] != "A")]
    if not len(single):
        return None
    plt = _plt()
    kinds, modes, columns = _kinds(single), _modes(single), metric_columns(single, manifest)
    has_entropy = single["baseline_entropy"].notna().any()
    rows = (["baseline_entropy"] if has_entropy else []) + columns
    fig, axes = plt.subplots(len(rows), len(kinds), figsize=(5.5 * len(kinds), 2.0 * len(rows)), squeeze=False)
    for col, kind in enumerate(kinds):
        part = single[single["kind"] == kind]
        layers = np.sort(part["layer"].unique())
        width = 0.8 / max(len(modes), 1)
        for row, column in enumerate(rows):
            ax = axes[row, col]
            if column == "baseline_entropy":
                mean = part.groupby("layer")["baseline_entropy"].mean().reindex(layers) * 100.0
                ax.bar(layers, mean.values, color="tab:gray")
                ax.set_ylabel("EP (%)")
            else:
                for m, mode in enumerate(modes):
                    stats = part[part["mode"] == mode].assign(v=lambda f: _finite(f[column])).groupby("layer")["v"]
                    mean, std = stats.mean().reindex(layers), stats.std().reindex(layers)
                    ax.bar(layers + (m - (len(modes) - 1) / 2) * width, mean.values, width, yerr=std.values,
                           color=_colour(mode, modes), label=mode, capsize=1.5, error_kw={"lw": 0.6})
                ax.axhline(0.0, color="black", lw=0.5)
                ax.set_ylabel(column, fontsize=8)
            ax.set_xticks(layers)
            ax.tick_params(labelsize=7)
        axes[0, col].set_title(f"{KIND_LABELS.get(kind, kind)} layers")
        axes[-1, col].set_xlabel("layer (0-based, forward order within its kind)")
    handles, labels = axes[-1, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", title="A replaced by")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def entropy_energy(records, path: Path) -> Path | None:
    """Figure 4: per recorded site of the baselines (mean over prompts, seeds and steps): energies E(AV),
    E(IV), E(UV); energy proportion; entropy percentage with the line that splits the top and bottom 50%."""
    base = records[records["mode"] == "A"] if len(records) else records
    if not len(base):
        return None
    plt = _plt()
    per_site = base.groupby(["position", "kind", "layer", "site"], sort=True)[
        ["entropy", "energy", "energy_identity", "energy_uniform", "energy_ratio"]].mean().reset_index()
    kinds = _kinds(per_site)
    median = per_site["entropy"].median() * 100.0
    fig, axes = plt.subplots(3, len(kinds), figsize=(6 * len(kinds), 7.5), squeeze=False)
    for col, kind in enumerate(kinds):
        part = per_site[per_site["kind"] == kind]
        x = part["layer"].to_numpy()
        ax = axes[0, col]
        ax.plot(x, part["energy_identity"], "^-", label="E(IV)", color="tab:red")
        ax.plot(x, part["energy"], "o-", label="E(AV)", color="black")
        ax.plot(x, part["energy_uniform"], "v-", label="E(UV)", color="tab:blue")
        ax.set_yscale("log")
        ax.set_ylabel("energy")
        ax.legend(fontsize=7)
        ax.set_title(f"{KIND_LABELS.get(kind, kind)} layers")
        axes[1, col].bar(x, part["energy_ratio"], color="tab:purple")
        axes[1, col].set_ylabel("energy proportion")
        axes[2, col].bar(x, part["entropy"] * 100.0, color="tab:gray")
        axes[2, col].axhline(median, color="red", lw=1, label=f"median of all sites ({median:.1f}%)")
        axes[2, col].set_ylabel("entropy (%)")
        axes[2, col].set_xlabel("layer (0-based within its kind)")
        axes[2, col].legend(fontsize=7)
        for row in range(3):
            axes[row, col].set_xticks(x)
            axes[row, col].tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def box_plots(results, manifest: dict, path: Path) -> Path | None:
    """Figures 18–19: per metric (rows) and kind and mode (columns), a box per layer over prompts and seeds."""
    single = results[(results["target_type"] == "site") & (results["mode"] != "A")]
    if not len(single):
        return None
    plt = _plt()
    panels = [(kind, mode) for kind in _kinds(single) for mode in _modes(single)]
    columns = metric_columns(single, manifest)
    fig, axes = plt.subplots(len(columns), len(panels), figsize=(4.5 * len(panels), 1.9 * len(columns)), squeeze=False)
    for col, (kind, mode) in enumerate(panels):
        part = single[(single["kind"] == kind) & (single["mode"] == mode)]
        layers = np.sort(part["layer"].unique())
        for row, column in enumerate(columns):
            ax = axes[row, col]
            data = [_finite(part[part["layer"] == layer][column]).dropna().to_numpy() for layer in layers]
            if layers.size:
                ax.boxplot(data, positions=layers, widths=0.6, flierprops={"markersize": 2})
            ax.tick_params(labelsize=6)
            if col == 0:
                ax.set_ylabel(column, fontsize=7)
        axes[0, col].set_title(f"{KIND_LABELS.get(kind, kind)} layers, A -> {mode}", fontsize=8)
        axes[-1, col].set_xlabel("layer (0-based within its kind)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def video_grid(out: str | os.PathLike, results, png: Path, gif: Path) -> list[Path]:
    """Figure 1: the kept videos of the first prompt and seed: per kind and mode, rows of the baseline and up to
    :data:`GRID_LAYERS` single-site perturbations (labelled mode, kind letter and 0-based layer within the kind:
    "I T3" is A -> I at temporal layer 3, the fourth temporal site); the middle frame as PNG, all frames as GIF."""
    kept = results[results["video"] != ""]
    if not len(kept):
        return []
    first = kept.iloc[0]
    kept = kept[(kept["prompt_index"] == first["prompt_index"]) & (kept["seed"] == first["seed"])]
    baseline = kept[kept["mode"] == "A"]
    single = kept[(kept["target_type"] == "site") & (kept["mode"] != "A")]
    if not len(baseline) or not len(single):
        return []
    root = Path(out)
    base_video = np.load(root / baseline.iloc[0]["video"])
    rows = []  # (title, [(label, video), ...]): the baseline, then layers
    for kind in _kinds(single):
        for mode in _modes(single):
            part = single[(single["kind"] == kind) & (single["mode"] == mode)].sort_values("layer")
            letter = KIND_LABELS.get(kind, kind)[0].upper()  # S(patial), T(emporal), J(oint)
            cells = [(f"{mode} {letter}{int(r.layer)}", np.load(root / r.video)) for r in part.itertuples()]
            for start in range(0, len(cells), GRID_LAYERS):
                rows.append((f"{KIND_LABELS.get(kind, kind)}, A -> {mode}",
                             [("baseline", base_video)] + cells[start:start + GRID_LAYERS]))
    plt = _plt()
    columns = max(len(cells) for _, cells in rows)
    middle = base_video.shape[0] // 2
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.3 * columns, 1.5 * len(rows)), squeeze=False)
    for row, (title, cells) in enumerate(rows):
        for col in range(columns):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(cells):
                ax.imshow(cells[col][1][middle])
                ax.set_title(cells[col][0], fontsize=7)
        axes[row, 0].text(-0.1, 0.5, title, transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=7)
    fig.suptitle(f"prompt {int(first['prompt_index'])}: {first['prompt']!r}, seed {int(first['seed'])}, frame {middle}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return [png, _grid_gif(rows, gif)]


def _grid_gif(rows, path: Path) -> Path:
    """The grid's rows as one animated GIF, every cell shown at 64 px (enlarged or shrunk by whole factors)."""

    def cell(video: np.ndarray) -> np.ndarray:
        zoom = max(1, GIF_CELL // video.shape[1])
        return thumbnail(video.repeat(zoom, axis=1).repeat(zoom, axis=2), GIF_CELL)

    strips = [video_io.side_by_side([cell(v) for _, v in cells], [label for label, _ in cells]) for _, cells in rows]
    width = max(r.shape[2] for r in strips)
    strips = [np.pad(r, ((0, 0), (0, 0), (0, width - r.shape[2]), (0, 0)), constant_values=255) for r in strips]
    return video_io.write_video(path, np.concatenate(strips, axis=1), fps=8)  # rows stacked: [F, sum H, W, 3]


PANELS_PER_ROW = 5


def _panel_grid(plt, count: int, width: float, height: float, **options):
    """A figure of ``count`` panels of ``width`` x ``height`` inches, wrapped at :data:`PANELS_PER_ROW` per row;
    returns (figure, the ``count`` axes in reading order) with the unused cells of the last row removed."""
    columns = min(count, PANELS_PER_ROW)
    rows = -(-count // columns)
    fig, grid = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False, **options)
    axes = list(grid.ravel())
    for ax in axes[count:]:
        fig.delaxes(ax)
    return fig, axes[:count]


def alpha_curves(results, manifest: dict, path: Path) -> Path | None:
    """Figure 14: each metric against α (U = 0, I = 1) per site, mean over prompts and seeds."""
    single = results[(results["target_type"] == "site") & (results["mode"] != "A")]
    if not len(single) or not any(m not in ("I", "U") for m in single["mode"].unique()):
        return None
    plt = _plt()
    columns = metric_columns(single, manifest)
    fig, axes = _panel_grid(plt, len(columns), 3.6, 3.2)
    for ax, column in zip(axes, columns):
        for (kind, site), part in single.groupby(["kind", "site"]):
            curve = part.assign(v=_finite(part[column])).groupby("alpha")["v"].mean().sort_index()
            ax.plot(curve.index, curve.values, "-", lw=0.8, alpha=0.8,
                    color="tab:orange" if kind == "temporal" else "tab:green")
        ax.set_xlabel("α (0 = U, 1 = I)")
        ax.set_ylabel(column, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].plot([], [], color="tab:green", label="spatial sites")
    axes[0].plot([], [], color="tab:orange", label="temporal sites")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def group_bars(results, manifest: dict, path: Path) -> Path | None:
    """Figure 15: mean of each metric per group target (blocks, kinds, entropy halves, regex) and mode."""
    groups = results[(~results["target_type"].isin(["site", "baseline"])) & (results["mode"] != "A")]
    if not len(groups):
        return None
    plt = _plt()
    columns, modes = metric_columns(groups, manifest), _modes(groups)
    targets = list(dict.fromkeys(groups["target"]))
    fig, axes = _panel_grid(plt, len(columns), 3.4, 0.35 * len(targets) + 1.5, sharey=True)
    y = np.arange(len(targets))
    height = 0.8 / len(modes)
    for ax, column in zip(axes, columns):
        for m, mode in enumerate(modes):
            part = groups[groups["mode"] == mode]
            mean = part.assign(v=_finite(part[column])).groupby("target")["v"].mean().reindex(targets)
            ax.barh(y + (m - (len(modes) - 1) / 2) * height, mean.values, height, color=_colour(mode, modes), label=mode)
        ax.axvline(0.0, color="black", lw=0.5)
        ax.set_xlabel(column, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(y)
    axes[0].invert_yaxis()
    for ax in axes[::PANELS_PER_ROW]:  # the first panel of every row names the targets
        ax.set_yticklabels(targets, fontsize=7)
        ax.tick_params(axis="y", labelleft=True)
    axes[-1].legend(fontsize=7, title="A replaced by")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(out: str | os.PathLike, frames: dict, manifest: dict, folder: Path) -> dict[str, Path]:
    """Every figure the sweep has data for, into ``folder``; returns title -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    results, records = frames["results"], frames["records"]
    figures: dict[str, Path | None] = {
        "per-site metric shifts (Figures 2, 16)": site_shifts(results, manifest, folder / "site_shifts.png"),
        "entropy and energy per site (Figure 4)": entropy_energy(records, folder / "entropy_energy.png"),
        "metrics against alpha (Figure 14)": alpha_curves(results, manifest, folder / "alpha.png"),
        "group targets (Figure 15)": group_bars(results, manifest, folder / "groups.png"),
    }
    grid = video_grid(out, results, folder / "video_grid.png", folder / "video_grid.gif")
    if grid:
        figures["video grid, middle frame (Figure 1)"] = grid[0]
        figures["video grid, all frames (Figure 1)"] = grid[1]
    figures["box plots per site (Figures 18-19)"] = box_plots(results, manifest, folder / "boxplots.png")
    return {title: path for title, path in figures.items() if path is not None}
