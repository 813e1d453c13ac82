"""The report of a head that draws attention maps (FAUD-CLIP): a per-AU table (the head's F1, the
AU's prevalence, a linear probe's F1 on the same images), a thumbnail sheet with each AU's map over
the face, and how much of each map falls where the AU acts.

Locality: a face region (the brows, the mouth …) is the set of grid cells that hold any of its
landmarks; an AU's mass on its region is the share of its map inside those cells, against the
share a uniform map would put there (the region's cells over all cells). A ratio above 1 says the
map looks where the AU acts more than chance does. Landmarks are (x, y) in [0, 1] of the picture
the encoder saw (the caller maps them into the encoder's crop).
"""

from __future__ import annotations

import io

import numpy as np

from heads.metrics import au_metrics


def per_au_rows(
    names: list[str],
    test_pred: np.ndarray,
    test_target: np.ndarray,
    train_target: np.ndarray,
    probe_f1: dict[str, float] | None,
) -> list[dict[str, float | str | None]]:
    """Per AU: the head's test F1 (``test_pred`` 0/1 against ``test_target``, −1 unlabelled), its
    prevalence among the labelled training and test rows, and the probe's F1 (None: no probe)."""
    f1 = au_metrics(test_pred, test_target, names)
    rows = []
    for j, name in enumerate(names):
        prevalence = []
        for target in (train_target, test_target):
            labelled = target[:, j] >= 0
            prevalence.append(float(target[labelled, j].mean()) if labelled.any() else float("nan"))
        rows.append(
            {
                "au": name,
                "f1": f1[f"f1_{name}"],
                "train_prevalence": prevalence[0],
                "test_prevalence": prevalence[1],
                "probe_f1": None if probe_f1 is None else probe_f1.get(name),
            }
        )
    return rows


def per_au_markdown(rows: list[dict], probe: str | None) -> list[str]:
    """The per-AU table; AUs the head never detects (F1 0) where the probe does are marked, so a
    collapse on some AUs shows at a glance."""
    lines = [
        "",
        f"Per AU on the test split: the head's F1, the AU's prevalence, and {probe or 'no probe'}'s F1.",
        "",
        "| AU | F1 | probe F1 | prevalence (train) | prevalence (test) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        probe_f1 = "—" if r["probe_f1"] is None else f"{r['probe_f1']:.2f}"
        collapsed = r["f1"] == 0 and (r["probe_f1"] or 0) > 0
        f1 = f"**{r['f1']:.2f}** (missed)" if collapsed else f"{r['f1']:.2f}"
        lines.append(f"| {r['au']} | {f1} | {probe_f1} | {r['train_prevalence']:.1%} | {r['test_prevalence']:.1%} |")
    missed = [r["au"] for r in rows if r["f1"] == 0 and (r["probe_f1"] or 0) > 0]
    if missed:
        lines += ["", f"Never detected where the probe detects them: {', '.join(missed)}."]
    return lines


def landmark_cells(points: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(S, h, w) bool: the grid cells holding any of each sample's ``points`` (S, K, 2)."""
    h, w = grid
    cols = np.clip((points[..., 0] * w).astype(int), 0, w - 1)
    rows = np.clip((points[..., 1] * h).astype(int), 0, h - 1)
    cells = np.zeros((points.shape[0], h, w), bool)
    sample = np.repeat(np.arange(points.shape[0]), points.shape[1])
    cells[sample, rows.ravel(), cols.ravel()] = True
    return cells


def region_mass(maps: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mass of each map (S, h, w) inside its sample's cells, the share a uniform map puts there), per sample."""
    inside = (maps * cells).sum((1, 2)) / maps.sum((1, 2))
    return inside, cells.mean((1, 2))


def locality(
    maps: np.ndarray, regions: dict[str, np.ndarray], au_regions: dict[str, str], names: list[str]
) -> list[dict[str, float | str]]:
    """Per AU with a region: mean mass on it, the uniform share, their ratio and the share of samples
    whose map beats uniform. ``maps`` (S, n, h, w), ``regions`` name → cells (S, h, w)."""
    rows = []
    for j, name in enumerate(names):
        if name not in au_regions or au_regions[name] not in regions:
            continue
        inside, uniform = region_mass(maps[:, j], regions[au_regions[name]])
        rows.append(
            {
                "au": name,
                "region": au_regions[name],
                "mass": float(inside.mean()),
                "uniform": float(uniform.mean()),
                "ratio": float(inside.mean() / uniform.mean()),
                "beats_uniform": float((inside > uniform).mean()),
            }
        )
    return rows


def locality_markdown(rows: list[dict[str, float | str]], n_samples: int) -> list[str]:
    if not rows:
        return ["", "No landmarks for these faces: the maps' locality is not measured."]
    lines = [
        "",
        f"## Where the maps look ({n_samples} test faces)",
        "",
        "Mass of each AU's map on the grid cells holding its region's landmarks, against a uniform map's share.",
        "",
        "| AU | region | mass | uniform | ratio | faces above uniform |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['au']} | {r['region']} | {r['mass']:.3f} | {r['uniform']:.3f} | {r['ratio']:.2f} | "
        f"{100 * r['beats_uniform']:.0f} % |"
        for r in rows
    ]
    return lines


def overlay(picture, attention: np.ndarray, alpha: float = 0.55):
    """A PIL picture with ``attention`` (h, w) drawn over it in a heat colour map, scaled to its maximum."""
    from matplotlib import colormaps
    from PIL import Image

    heat = attention / max(float(attention.max()), 1e-12)
    coloured = (colormaps["inferno"](heat)[..., :3] * 255).astype(np.uint8)
    layer = Image.fromarray(coloured).resize(picture.size, Image.Resampling.BILINEAR)
    return Image.blend(picture.convert("RGB"), layer, alpha)


def map_sheet(maps: np.ndarray, pictures: list, names: list[str], captions: list[str], size: int = 96) -> bytes:
    """PNG: one line per sample (its caption at the left), one column per AU, each AU's map over the face."""
    from PIL import Image, ImageDraw

    pad, text_width, header = 4, 150, 18
    n_samples, n = maps.shape[:2]
    sheet = Image.new("RGB", (text_width + n * (size + pad), header + n_samples * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(names):
        draw.text((text_width + j * (size + pad) + 4, 3), name, fill="black")
    for i in range(n_samples):
        y = header + i * (size + pad)
        for k, line in enumerate(captions[i].split("\n")):
            draw.text((4, y + 4 + 14 * k), line, fill="black")
        picture = pictures[i].resize((size, size))
        for j in range(n):
            sheet.paste(overlay(picture, maps[i, j]), (text_width + j * (size + pad), y))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
