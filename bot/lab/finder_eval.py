"""Scores mark finders (ONNX graphs) on their own, at the engine's working resolution (issue 25)::

    python -m bot.lab.finder_eval bot/engine/models/segmenter.onnx /tmp/finder/ppocr/finder.onnx ... [--n 36]

The cases are `unmark bench engine --split val`'s (bench.held_out_set on the *val* split: its photos, fonts and
logos, at about 1 MP, fixed seed), so nothing here is trained on and the test split is never seen. Each finder sees
the engine's proxy of the image (bot.engine.segmenter: long side at most 640, sides multiples of 32; RGB in [0, 1])
and its mask probability is compared with the true mark on that proxy (the share of a proxy pixel the true mark,
alpha > synth.MASK_THRESHOLD, covers at full resolution, at least a half). Per marked family: mean IoU and recall
over its cases at a threshold; on the clean photos and the photos of real text, the share on which the finder
claims any proxy pixel above it. Every threshold in --thresholds is scored; the table shows each finder at 0.5 and
at the threshold that gives it the best mean IoU over the four families (chosen here, on val), and at the engine's
core probability (mark.MIN_PEAK). ``--json`` keeps every threshold; ``--table A.json B.json`` prints them together.
A graph with an output named ``mask`` is read from it (today's segmenter has three outputs); otherwise its one
output is the probability.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from bot.engine.segmenter import proxy_size, to_input
from bot.lab import bench
from bot.lab.synth import MARKED_FAMILIES, MASK_THRESHOLD

__all__ = ["THRESHOLDS", "evaluate", "main", "table"]

THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9995)
NO_MARK = ("clean", "scenetext")
ENGINE_CORE = "0.9995"  # mark.MIN_PEAK: the engine keeps a mark only with a core this sure


def _session(path: Path, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    output = "mask" if "mask" in names else names[0]
    return session, session.get_inputs()[0].name, output


def evaluate(models: dict[str, Path], cases: list[bench.Case], thresholds: tuple[float, ...] = THRESHOLDS,
             threads: int = 2) -> dict[str, dict]:
    """Per model: {"seconds": mean s per proxy, "at": {threshold: {family: {"iou", "recall"} or {"claimed"}}}}."""
    truths = []
    for case in cases:
        h, w = proxy_size(*case.sample.marked.shape[:2])
        share = cv2.resize(case.sample.mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        truths.append(share >= 0.5)
    results = {}
    for name, path in models.items():
        session, input_name, output = _session(path, threads)
        per: dict[float, dict[str, list[float]]] = {t: {} for t in thresholds}
        seconds = []
        for case, truth in zip(cases, truths):
            batch = to_input(case.sample.marked, truth.shape)
            started = time.perf_counter()
            prob = session.run([output], {input_name: batch})[0][0, 0]
            seconds.append(time.perf_counter() - started)
            family = case.sample.family
            for t in thresholds:
                predicted = prob > t
                scores = per[t]
                if family in MARKED_FAMILIES:
                    union = np.count_nonzero(predicted | truth)
                    hit = np.count_nonzero(predicted & truth)
                    scores.setdefault(f"{family}.iou", []).append(hit / union if union else 1.0)
                    if truth.any():
                        scores.setdefault(f"{family}.recall", []).append(hit / np.count_nonzero(truth))
                elif family in NO_MARK:
                    scores.setdefault(f"{family}.claimed", []).append(float(predicted.any()))
        results[name] = {
            "model": str(path), "seconds": float(np.mean(seconds)),
            "at": {str(t): {k: float(np.mean(v)) for k, v in scores.items()} for t, scores in per.items()},
        }
    return results


def _mean_iou(scores: dict[str, float]) -> float:
    return float(np.mean([scores[f"{f}.iou"] for f in MARKED_FAMILIES]))


def table(results: dict[str, dict]) -> str:
    """A markdown table: each finder at 0.5, at its best threshold by mean IoU, and at the engine's core (what it
    finds, and claims on clean photos, at the probability the engine asks a mark's core to reach)."""
    head = ("| finder | threshold | " + " | ".join(f"{f} IoU / recall" for f in MARKED_FAMILIES)
            + " | mean IoU | clean / real-text photos claimed | s per proxy |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, result in results.items():
        best = max(result["at"], key=lambda t: _mean_iou(result["at"][t]))
        for t in dict.fromkeys(("0.5", best, ENGINE_CORE)):
            s = result["at"][t]
            cells = " | ".join(f"{s[f'{f}.iou']:.3f} / {s[f'{f}.recall']:.3f}" for f in MARKED_FAMILIES)
            label = " (best)" if t == best else " (engine's core)" if t == ENGINE_CORE else ""
            lines.append(f"| {name} | {t}{label} | {cells} | {_mean_iou(s):.3f} | "
                         f"{100 * s['clean.claimed']:.0f} % / {100 * s['scenetext.claimed']:.0f} % | "
                         f"{result['seconds']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.lab.finder_eval", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="ONNX finders; NAME=PATH to name one")
    parser.add_argument("--table", type=Path, nargs="+", help="only print the table of earlier --json files")
    parser.add_argument("--n", type=int, default=36, help="cases per family (bench's val default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write every threshold's figures here")
    args = parser.parse_args(argv)
    if args.table:
        print(table({k: v for path in args.table for k, v in json.loads(path.read_text())["results"].items()}))
        return
    models = {}
    for spec in args.models:
        name, _, path = spec.rpartition("=")
        models[name or Path(path).parent.name] = Path(path)
    cases = bench.held_out_set(args.n, split="val")
    results = evaluate(models, cases, threads=args.threads)
    if args.json:
        args.json.write_text(json.dumps({"split": "val", "n_per_family": args.n, "seed": bench.SEED,
                                         "mask_threshold": MASK_THRESHOLD, "results": results}, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
