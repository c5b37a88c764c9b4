"""A sweep's results as tables, plots and a markdown summary with the paper's observations checked.

    write_report("runs/sweep")      # -> runs/sweep/report/summary.md (+ tables/*.csv, *.parquet, plots/*.png)

**Tables** (CSV and Parquet, one row per configuration or per configuration and site, in sweep order):

- ``results``: key, prompt (index and text), seed, target, target_type (baseline / site / kind / block /
  entropy / regex), mode, alpha (1 for I, 0 for U, NaN for the baseline), the perturbed site (single-site
  targets: name, kind, layer = its 0-based index within its kind, the API's ``kind_index``; -1 for baselines
  and targets of several sites) and its baseline entropy, every metric column, and ``<column>_shift`` = value −
  the baseline's value for metrics of a video alone.
- ``records``: entropy, energy E(AV), E(IV), E(UV) and energy proportion of every recorded site (name, kind,
  0-based layer within its kind, position among the recorded sites) of every configuration, mean over steps
  (conditional row).
- ``records_by_step``: the same per denoising step, for the baselines.

**Plots** (:mod:`.plots`): per-site metric shifts under each mode, spatial and temporal (the paper's Figures 2
and 16); entropy percentage, energy and energy proportion per site (Figure 4); box plots over prompts per site
(Figures 18–19); the video grid of the first prompt (Figure 1); metrics against α (Figure 14) and per group
target (Figure 15) when the sweep has them.

**Observations**: the summary checks the paper's claims on this sweep's numbers (high-entropy maps are near U;
I at the first and last layers hurts structure most; temporal maps near U give static videos; most temporal
maps have entropy near 100%) and says for each whether it holds, with the numbers it used.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..core.sites import KIND_LABELS
from . import plots
from .engine import RECORD_FIELDS
from .store import RESULTS, SweepStoreError, read_manifest, read_rows

REPORT_DIR = "report"


def _pandas():
    try:
        import pandas  # deferred: pandas takes about a second to import
    except ImportError as e:  # pragma: no cover - pandas is a declared dependency
        raise ImportError("sweep reports need pandas (and pyarrow for Parquet): pip install pandas pyarrow") from e
    return pandas


def tables(out: str | os.PathLike) -> dict:
    """{"results", "records", "records_by_step"} pandas DataFrames of a sweep folder (module docstring)."""
    pd = _pandas()
    manifest = read_manifest(out)
    rows = read_rows(out)
    rows.sort(key=lambda r: r["index"])
    definition = manifest["definition"]
    sites = {s["name"]: s for s in manifest["sites"]}
    recorded = manifest["recorded_sites"]
    metric_columns = [c for m in manifest["metrics"].values() for c in m["columns"]]
    alone = [c for m in manifest["metrics"].values() if not m["pairwise"] for c in m["columns"]]

    baseline = {(r["prompt_index"], r["seed"]): r for r in rows if r["mode"] == "A"}
    records_rows, by_step_rows, result_rows = [], [], []
    for r in rows:
        single = r["sites"][0] if len(r["sites"]) == 1 else None
        base = baseline.get((r["prompt_index"], r["seed"]))
        base_entropy = None
        if single is not None and base is not None and "records" in base and single in recorded:
            base_entropy = base["records"]["entropy"][recorded.index(single)]
        out_row = {
            "key": r["key"], "index": r["index"], "prompt_index": r["prompt_index"],
            "prompt": definition["prompts"][r["prompt_index"]], "seed": r["seed"], "target": r["target"],
            "target_type": r["target"].split(":")[0], "mode": r["mode"], "alpha": _alpha(r["mode"]),
            "n_sites": len(r["sites"]), "site": single or "",
            "kind": sites[single]["kind"] if single else "", "layer": sites[single]["kind_index"] if single else -1,
            "baseline_entropy": np.nan if base_entropy is None else base_entropy,
            **{c: r["metrics"].get(c, np.nan) for c in metric_columns},
        }
        for c in alone:
            out_row[f"{c}_shift"] = (r["metrics"].get(c, np.nan) - base["metrics"].get(c, np.nan)) if base else np.nan
        out_row["video"] = r.get("video") or ""
        result_rows.append(out_row)
        ident = {"key": r["key"], "index": r["index"], "prompt_index": r["prompt_index"], "seed": r["seed"],
                 "target": r["target"], "mode": r["mode"]}
        for j, name in enumerate(recorded if "records" in r else []):
            site = {"site": name, "kind": sites[name]["kind"], "layer": sites[name]["kind_index"], "position": j}
            records_rows.append({**ident, **site, **{f: r["records"][f][j] for f in RECORD_FIELDS}})
            for step in range(len(r.get("records_by_step", {}).get("entropy", []))):
                by_step_rows.append({**ident, "step": step, **site,
                                     **{f: r["records_by_step"][f][step][j] for f in RECORD_FIELDS}})
    return {"results": pd.DataFrame(result_rows), "records": pd.DataFrame(records_rows),
            "records_by_step": pd.DataFrame(by_step_rows)}


def _alpha(mode: str) -> float:
    return {"A": math.nan, "I": 1.0, "U": 0.0}[mode] if mode in ("A", "I", "U") else float(mode)


def write_tables(out: str | os.PathLike, frames: dict | None = None) -> dict[str, list[Path]]:
    """Write every table as ``report/<name>.csv`` and ``report/<name>.parquet``; returns name -> files."""
    frames = tables(out) if frames is None else frames
    folder = Path(out) / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in frames.items():
        csv, parquet = folder / f"{name}.csv", folder / f"{name}.parquet"
        frame.to_csv(csv, index=False)
        frame.to_parquet(parquet, index=False)
        written[name] = [csv, parquet]
    return written


def write_report(out: str | os.PathLike) -> Path:
    """Tables, plots and ``report/summary.md`` of a sweep folder; returns the summary's path."""

    manifest = read_manifest(out)
    if not read_rows(out):
        raise SweepStoreError(f"{out} holds no results yet ({RESULTS} is missing or empty): run the sweep first, "
                              "then write its report")
    frames = tables(out)
    write_tables(out, frames)
    folder = Path(out) / REPORT_DIR
    figures = plots.write_all(out, frames, manifest, folder / "plots")
    summary = folder / "summary.md"
    summary.write_text(summary_markdown(manifest, frames, figures, folder))
    return summary

# ----------------------------------------------------------------------------------------------- summary


def summary_markdown(manifest: dict, frames: dict, figures: dict[str, Path], folder: Path) -> str:
    """The markdown summary: settings, counts, links, most sensitive sites, groups, observations."""
    d = manifest["definition"]
    res = frames["results"]
    perturbed = res[res["mode"] != "A"] if len(res) else res
    lines = [
        "# Perturbation sweep", "",
        f"Model `{manifest['model']['path']}` ({manifest['model']['parameters']:,} denoiser parameters, "
        f"{'/'.join(manifest['model']['dtypes'])}); {len(d['prompts'])} prompts x {len(d['seeds'])} seeds "
        f"({', '.join(map(str, d['seeds']))}); targets {', '.join(f'`{t}`' for t in d['targets'])}; "
        f"modes {', '.join(d['modes'])}; {d['num_frames']} frames {d['height']}x{d['width']}, "
        f"{d['num_inference_steps']} steps, scheduler {d['scheduler']}, guidance {d['guidance_scale']}, "
        f"perturbed rows: {d['perturb_rows']}" + (f", steps {d['window'][0]}-{d['window'][1] - 1}" if d["window"] else "") + ".",
        "",
        f"Configurations finished: {len(res)} ({int((res['mode'] == 'A').sum()) if len(res) else 0} baselines).",
        "",
        "Tables: " + ", ".join(f"[{n}]({n}.csv) ([parquet]({n}.parquet))" for n in frames) + ".",
        "",
        "Metrics: " + "; ".join(f"`{n}` — {m['description']}" for n, m in manifest["metrics"].items()) + ".",
        "Columns ending in `_shift` are the value minus the baseline's (same prompt and seed). Layers are numbered "
        "from 0 in forward order within their kind, as the API's per-kind index "
        "(`SiteTable.select(kind=..., index=[i])`).",
        "",
    ]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"- [{title}]({path.relative_to(folder).as_posix()})" for title, path in figures.items()]
        lines += [""] + [f"![{title}]({path.relative_to(folder).as_posix()})" for title, path in figures.items()] + [""]
    single = perturbed[perturbed["target_type"] == "site"] if len(perturbed) else perturbed
    if len(single):
        lines += ["## Most sensitive sites", "",
                  "Mean over prompts and seeds of each site's effect, the five largest per measure and mode "
                  "(structure: 1 − SSIM; motion and others: |shift|).", ""]
        lines += _sensitive_sites(single)
    groups = perturbed[~perturbed["target_type"].isin(["site"])] if len(perturbed) else perturbed
    if len(groups):
        lines += ["## Group targets", ""] + _group_table(groups) + [""]
    lines += ["## The paper's observations on this sweep", "",
              "Checked automatically from the numbers above; read them with the figures. \"n/a\" means the sweep "
              "lacks what the check needs.", ""]
    lines += _observations(frames)
    return "\n".join(lines) + "\n"


def _effects(single) -> dict[str, object]:
    """name -> per-row effect Series (structure = 1 − SSIM; other columns: absolute shift)."""
    effects = {}
    if "ssim" in single:
        effects["structure (1 - SSIM)"] = 1.0 - single["ssim"]
    for column, label in (("motion_shift", "motion"), ("temporal_consistency_shift", "temporal consistency"),
                          ("flicker_shift", "flicker"), ("toy_travel_shift", "toy travel (px)"),
                          ("toy_hue_shift", "toy hue shift (deg)"), ("toy_mask_iou", "toy mask (1 - IoU)")):
        if column in single:
            effects[label] = (1.0 - single[column]) if column == "toy_mask_iou" else single[column].abs()
    return effects


def _sensitive_sites(single) -> list[str]:
    lines = ["| measure | mode | sites (layer, mean effect) |", "| --- | --- | --- |"]
    for label, effect in _effects(single).items():
        frame = single.assign(effect=effect.replace([np.inf, -np.inf], np.nan))
        for mode, part in frame.groupby("mode", sort=False):
            mean = part.groupby(["kind", "layer", "site"])["effect"].mean().sort_values(ascending=False).head(5)
            cells = ", ".join(f"{KIND_LABELS.get(k, k)} {layer} ({v:.3g})" for (k, layer, _), v in mean.items())
            lines.append(f"| {label} | {mode} | {cells} |")
    return lines + [""]


def _group_table(groups) -> list[str]:
    columns = [c for c in ("ssim", "psnr", "temporal_consistency_shift", "flicker_shift", "motion_shift",
                           "toy_mask_iou", "toy_travel_shift", "toy_hue_shift") if c in groups]
    frame = groups.assign(**{c: groups[c].replace([np.inf, -np.inf], np.nan) for c in columns})
    mean = frame.groupby(["target", "mode"], sort=False)[columns].mean()
    lines = ["| target | mode | " + " | ".join(columns) + " |", "| --- | --- | " + " | ".join("---" for _ in columns) + " |"]
    for (target, mode), values in mean.iterrows():
        lines.append(f"| `{target}` | {mode} | " + " | ".join(f"{values[c]:.4g}" for c in columns) + " |")
    return lines


def _observations(frames: dict) -> list[str]:
    res, rec = frames["results"], frames["records"]
    rows = ["| observation (paper) | measure on this sweep | value | holds? |", "| --- | --- | --- | --- |"]
    base_rec = rec[rec["mode"] == "A"] if len(rec) else rec
    single = res[(res["target_type"] == "site")] if len(res) else res
    kinds = set(res["kind"]) | (set(rec["kind"]) if len(rec) else set())  # the model's self-attention kinds seen

    # 1. high-entropy maps are near U: entropy vs energy proportion (0 = output energy of U, 1 = of I).
    if len(base_rec) and base_rec["site"].nunique() >= 3:
        per_site = base_rec.groupby("site")[["entropy", "energy_ratio"]].mean()
        rho = per_site["entropy"].corr(per_site["energy_ratio"], method="spearman")
        rows.append(_obs_row("§3.4: high-entropy maps are close to U (output energy near E(UV))",
                             "Spearman ρ over sites between baseline entropy and energy proportion", rho,
                             None if np.isnan(rho) else rho < 0))
    else:
        rows.append(_obs_row("§3.4: high-entropy maps are close to U", "needs baseline records at 3 or more sites",
                             np.nan, None))
    u = single[single["mode"] == "U"] if len(single) else single
    if len(u) and "ssim" in u and u.dropna(subset=["baseline_entropy"])["site"].nunique() >= 3:
        per_site = u.groupby("site")[["baseline_entropy", "ssim"]].mean()
        rho = per_site["baseline_entropy"].corr(1.0 - per_site["ssim"], method="spearman")
        rows.append(_obs_row("§3.4: so replacing a high-entropy map by U changes little",
                             "Spearman ρ over sites between baseline entropy and 1 − SSIM under U", rho,
                             None if np.isnan(rho) else rho < 0))

    # 2. I at the first and last layers hurts structure most.
    i = single[single["mode"] == "I"] if len(single) else single
    for kind in [k for k in ("spatial_self", "temporal", "joint") if k in kinds]:
        part = i[i["kind"] == kind] if len(i) and "ssim" in i else i.iloc[0:0]
        if part["layer"].nunique() >= 3:
            effect = (1.0 - part.groupby("layer")["ssim"].mean()).sort_values(ascending=False)
            first, last = part["layer"].min(), part["layer"].max()
            top = list(effect.index[:2])
            value = f"largest at layers {top[0]}, {top[1]} (of {first}..{last}); 1 − SSIM {effect.iloc[0]:.3g}, {effect.iloc[1]:.3g}"
            rows.append(_obs_row(f"§3.2–3.3: I at the first and last {KIND_LABELS[kind]} layers hurts structure most",
                                 "the two layers with the largest mean 1 − SSIM under I (holds if they are the first "
                                 "and the last, or the largest is the last)", value,
                                 top[0] in (first, last) and (top[1] in (first, last) or top[0] == last)))
        else:
            rows.append(_obs_row(f"§3.2–3.3: I at the first and last {KIND_LABELS[kind]} layers hurts structure most",
                                 "needs single-site I results with SSIM at 3 or more layers", np.nan, None))

    if "temporal" not in kinds:
        return rows + [""]

    # 3. temporal maps near U give static videos.
    ut = u[u["kind"] == "temporal"] if len(u) else u
    motion = "toy_travel_shift" if "toy_travel_shift" in ut else "motion_shift"
    if len(ut) and motion in ut:
        per_site = ut.groupby("site")[motion].mean()
        frac = float((per_site < 0).mean())
        rows.append(_obs_row("§3.3: temporal maps replaced by U give more static videos",
                             f"share of temporal sites whose mean `{motion}` under U is negative "
                             f"(mean shift {per_site.mean():.3g})", frac, frac > 0.5))
        it = i[i["kind"] == "temporal"] if len(i) else i
        if len(it) and motion in it:
            per_site = it.groupby("site")[motion].mean()
            frac = float((per_site > 0).mean())
            rows.append(_obs_row("§3.3: temporal maps replaced by I move more",
                                 f"share of temporal sites whose mean `{motion}` under I is positive "
                                 f"(mean shift {per_site.mean():.3g})", frac, frac > 0.5))
    else:
        rows.append(_obs_row("§3.3: temporal maps replaced by U give more static videos",
                             "needs single-site U results at temporal sites with a motion metric", np.nan, None))

    # 4. most temporal maps have entropy near 100%.
    temporal = base_rec[base_rec["kind"] == "temporal"] if len(base_rec) else base_rec
    if len(temporal):
        share = float((temporal.groupby("site")["entropy"].mean() > 0.9).mean())
        rows.append(_obs_row("§3.4: more than 70% of temporal maps have entropy near 100%",
                             "share of temporal sites with mean baseline entropy > 90%", share, share > 0.7))
    return rows + [""]


def _obs_row(observation: str, measure: str, value, holds) -> str:
    if isinstance(value, float):
        text = "n/a" if np.isnan(value) else f"{value:.3g}"
    else:
        text = str(value)
    verdict = "n/a" if holds is None else ("yes" if holds else "no")
    return f"| {observation} | {measure} | {text} | {verdict} |"
