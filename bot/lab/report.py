"""Turns engine-benchmark results into the printed table, the JSON file and the picture grid people look at."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from bot.lab import assets, bench
from bot.lab.bench import Result
from bot.lab.synth import FAMILIES, Sample

__all__ = ["QUICK_N", "DEFAULT_N", "KEPT_TARGET", "VAL_N", "benchmark", "default_n", "grid", "kept_table", "machine",
           "outputs", "table", "write_json"]

DEFAULT_N = 12  # per family: 72 images at 1 MP, a few minutes on 2 cores (the held-out table)
# On the val split, per set: as many as it takes to weigh a setting that moves a handful of images (18 photos a
# family were too few); its signs are one family and its backdrops' grounds are plain, so fewer do there.
VAL_N: dict[bench.Set, int] = {"photos": 36, "signs": 24, "backdrops": 12}
QUICK_N = 2
GRID_PER_FAMILY = 2
CELL = (384, 256)  # (width, height) of one grid cell: a full-resolution window, so faint residue stays visible
LABEL_HEIGHT = 22
TABLE_COLUMNS = (
    # (header, summary key, format, width)
    ("PSNR", "psnr", "{:.2f}", 7), ("PSNR-w", "psnr_w", "{:.2f}", 7), ("SSIM", "ssim", "{:.4f}", 7),
    ("IoU", "iou", "{:.3f}", 6), ("prec", "precision", "{:.3f}", 6), ("recall", "recall", "{:.3f}", 6),
    ("unchanged", "unchanged", "{:.4f}", 9), ("touched", "touched", "{}", 7),
    ("s/MP", "s_per_mp", "{:.3f}", 6), ("peak MiB", "peak_mib", "{:.0f}", 8),
)


def default_n(split: assets.Split, on: bench.Set) -> int:
    """Images per family when none is asked for: DEFAULT_N on the held-out set, VAL_N on the val split."""
    return VAL_N[on] if split == "val" else DEFAULT_N


def benchmark(out: Path, *, n: int | None = None, megapixels: float = bench.MEGAPIXELS,
              methods: Sequence[str] | None = None, progress: Callable[[int, int], None] | None = None,
              split: assets.Split = "test", on: bench.Set = "photos") -> str:
    """Build the held-out set (or the split's other set: bench.SETS), run the methods (all by default), write
    out/engine.json and out/engine-grid.png (engine-12mp.json and so on at another size); return the table.
    n: images per family, default_n(split, on) when None."""
    n = n or default_n(split, on)
    chosen = {name: bench.METHODS[name] for name in (methods or bench.METHODS)}
    started = time.perf_counter()
    cases = bench.SETS[on](n, megapixels=megapixels, split=split)
    built = time.perf_counter()
    results = bench.run(cases, chosen, keep=GRID_PER_FAMILY, progress=progress)
    summary = bench.summarize(results)
    settings = {
        "seed": bench.SEED, "n_per_family": n, "megapixels": megapixels, "methods": list(chosen),
        "split": split, "set": on, "build_seconds": round(built - started, 2),
        "run_seconds": round(time.perf_counter() - built, 2),
        "assets": {"photos": [assets.photo_name(p) for p in assets.photos(split)],
                   "scenetext": [assets.photo_name(p) for p in assets.photos(split, "scenetext")],
                   "kinds": {kind: len(assets.photos(split, kind)) for kind in assets.KINDS},
                   "fonts": [f.name for f in assets.fonts(split)], "logos": len(assets.logos(split))},
    }
    json_path, grid_path = outputs(out, megapixels, split, on)
    write_json(json_path, results, summary, settings)
    grid(grid_path, results)
    return table(summary)


def outputs(out: Path, megapixels: float = bench.MEGAPIXELS, split: assets.Split = "test", on: bench.Set = "photos"
            ) -> tuple[Path, Path]:
    """(JSON, picture grid) a benchmark at this size writes: engine.json at the default size, engine-12mp.json...;
    engine-val.json for the val split, engine-val-backdrops.json for its marks on plain grounds, and so on."""
    stem = "engine" if megapixels == bench.MEGAPIXELS else f"engine-{megapixels:g}mp"
    stem += "" if split == "test" else f"-{split}"
    stem += "" if on == "photos" else f"-{on}"
    return out / f"{stem}.json", out / f"{stem}-grid.png"


def table(summary: Mapping[str, Mapping[str, Mapping[str, float | int | None]]]) -> str:
    """One plain-text table: a block of method rows per family, then the pooled "all" blocks."""
    methods = list(next(iter(summary.values()))) if summary else []
    width = max([len("all unmarked"), *(len(g) for g in summary)])
    mwidth = max([6, *(len(m) for m in methods)])
    header = f"{'family':<{width}}  {'method':<{mwidth}}  {'n':>3}" + "".join(
        f"  {name:>{w}}" for name, _, _, w in TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    for group, per_method in summary.items():
        for method, row in per_method.items():
            cells = []
            for name, key, fmt, w in TABLE_COLUMNS:
                value = row.get(key)
                if key == "touched":
                    marked = row.get("iou") is not None
                    text = "-" if marked else f"{value}/{row['n']}"
                else:
                    text = "-" if value is None else fmt.format(value)
                cells.append(f"  {text:>{w}}")
            lines.append(f"{group:<{width}}  {method:<{mwidth}}  {row['n']:>3}" + "".join(cells))
        lines.append("")
    lines += kept_table(summary)
    return "\n".join(lines).rstrip()


KEPT_TARGET = 0.995  # issue 25: clean images of every kind come back untouched


def kept_table(summary: Mapping[str, Mapping[str, Mapping[str, float | int | None]]]) -> list[str]:
    """Per method, the share of clean images of each kind it left bit for bit (images, not pixels), as lines; none
    when the summary has no clean images."""
    groups = {("photo" if kind == "clean" else kind): summary[group] for kind, group in
              (("clean", "clean"), *((k, k) for k in bench.NEGATIVE_KINDS), ("scenetext", "scenetext"))
              if group in summary}
    if not groups:
        return []
    methods = list(next(iter(groups.values())))
    mwidth = max([6, *(len(m) for m in methods)])
    header = f"{'method':<{mwidth}}" + "".join(f"  {kind:>12}" for kind in groups)
    lines = [f"clean images left unchanged, by kind (kept / n; target {KEPT_TARGET:.1%})", header, "-" * len(header)]
    for method in methods:
        cells = []
        for row in (groups[kind][method] for kind in groups):
            n = int(row["n"])  # type: ignore[arg-type]
            kept = n - int(row["touched"])  # type: ignore[arg-type]
            cells.append(f"  {f'{kept}/{n} {kept / n:.0%}':>12}")
        lines.append(f"{method:<{mwidth}}" + "".join(cells))
    return lines


def write_json(path: Path, results: Sequence[Result], summary: Mapping[str, object], settings: Mapping[str, object]
               ) -> None:
    """Everything in one file: settings, machine, the summary table and every sample's scores and draw."""
    samples = [{
        "family": r.case.sample.family, "kind": r.case.kind, "photo": r.case.photo, "index": r.case.index,
        "size": list(r.case.sample.marked.shape[:2]), "meta": _jsonable(r.case.sample.meta),
        "scores": {name: asdict(score) for name, score in r.scores.items()},
    } for r in results]
    document = {"settings": dict(settings), "machine": machine(), "summary": summary, "samples": samples}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(document), indent=1, ensure_ascii=False) + "\n")


def grid(path: Path, results: Sequence[Result]) -> int:
    """Save input | each method's result | true clean, for the cases whose outputs were kept; returns rows drawn."""
    # Clean images of the other kinds only where a method changed them: the rest look like their input.
    shown = [r for r in results if r.outputs and (r.case.kind in ("photo", "scenetext")
                                                  or any(score.touched for score in r.scores.values()))]
    kept = sorted(shown, key=lambda r: (FAMILIES.index(r.case.sample.family), _kind_order(r.case.kind), r.case.index))
    if not kept:
        return 0
    methods = [m for m in kept[0].outputs if m != "noop"]
    headers = ["input", *methods, "true clean"]
    cw, ch = CELL
    rows = []
    for result in kept:
        sample = result.case.sample
        box = _window(sample, result.outputs)
        images = [sample.marked, *(result.outputs[m] for m in methods), sample.clean]
        row = np.full((ch + LABEL_HEIGHT, cw * len(images), 3), 255, np.uint8)
        for i, image in enumerate(images):
            crop = image[box[1] : box[3], box[0] : box[2]]
            row[LABEL_HEIGHT : LABEL_HEIGHT + crop.shape[0], i * cw : i * cw + crop.shape[1]] = crop
            own = sample.family if result.case.kind in ("photo", "scenetext") else result.case.kind
            label = f"{own} #{result.case.index}" if i == 0 else headers[i]
            if 0 < i <= len(methods):
                score = result.scores[methods[i - 1]]
                label += f"  {score.psnr:.1f} dB" if score.psnr_w is None else f"  {score.psnr_w:.1f} dB-w"
            cv2.putText(row, label, (i * cw + 4, LABEL_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                        cv2.LINE_AA)
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(rows)[..., ::-1])
    return len(rows)


def machine() -> dict[str, object]:
    """What the numbers were measured on: they compare only on the same machine."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("numpy", "opencv-python", "onnxruntime", "Pillow", "rapidocr-onnxruntime"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "packages": versions,
            "opencv_threads": cv2.getNumThreads()}


def _window(sample: Sample, outputs: Mapping[str, np.ndarray]) -> tuple[int, int, int, int]:
    """A CELL-sized box around the mark's centre, or around what the methods changed when there is no mark."""
    h, w = sample.marked.shape[:2]
    focus = sample.mask
    if not focus.any():
        focus = np.zeros((h, w), bool)
        for output in outputs.values():
            focus |= np.any(output != sample.marked, axis=2)
    if focus.any():
        ys, xs = np.nonzero(focus)
        cx, cy = int(np.median(xs)), int(np.median(ys))
    else:
        cx, cy = w // 2, h // 2
    cw, ch = min(CELL[0], w), min(CELL[1], h)
    x0, y0 = min(max(0, cx - cw // 2), w - cw), min(max(0, cy - ch // 2), h - ch)
    return x0, y0, x0 + cw, y0 + ch


def _jsonable(value: object) -> object:
    """Numpy scalars and tuples into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _kind_order(kind: str) -> int:
    return assets.KINDS.index(kind) if kind in assets.KINDS else 0  # type: ignore[arg-type]
