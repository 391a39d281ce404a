"""Re-measures the engine's rules with the v2 finder (issue 25, item 5): each variant switches one rule off, and
all of them run side by side on the val split, on photos (marks, clean images of every kind, real text), on marks
drawn on plain backdrops and on photos with painted signs. A rule that costs as much as it gains is a candidate to
drop. Never run on the test split: this chooses settings.

    python benchmarks/rules.py [--n 12] [--sets photos,signs,backdrops] [--only v2,no_peak,...]

Needs benchmarks/assets.sh. About 25 minutes on a 2-core machine for n=12 and every variant.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from unittest import mock

import numpy as np

from bot.engine import mark, text, tiled
from bot.engine.mark import MarkEngine
from bot.lab import bench
from bot.lab.synth import Sample

# name -> ((module, attribute, value), ...): what the variant sets while it cleans. "v2" is the engine as shipped.
Patch = tuple[object, str, object]
VARIANTS: dict[str, tuple[Patch, ...]] = {
    "v2": (),
    # finding (bot.engine.mark, step 1)
    "no_peak": ((mark, "MIN_PEAK", 0.0),),  # every mark over MARK_PROBABILITY counts, sure core or not
    "no_stamps": ((mark, "STAMP_PEAK", 2.0),),  # corner stamps with text need the full MIN_PEAK
    "no_vouch": ((mark, "REPEAT_SIZES", 1e-9),),  # faint repeats are not vouched for by sure ones
    "no_tiled": ((tiled, "remove", lambda *_a, **_k: None),),  # no lattice step: repeats fitted as marks
    # removing (steps 2-3)
    "no_max_fill": ((mark, "MAX_FILL", 1.0),),  # many-coloured marks are filled however big
    "no_edge": ((mark, "MARK_EDGE", 1.01),),  # a filled mark does not take its fainter rim
    # the text pass (step 4)
    "no_sign_rule": ((text, "MIN_TEXTURE", 0.0),),  # words on a flat panel are filled too
    "no_backdrop": ((text, "_on_a_backdrop", lambda *_a, **_k: False),),  # a backdrop counts as a panel
    "no_page_rule": ((text, "MAX_LINES", 10**9),),  # pages and screens get a text pass
    "one_colour_0.7": ((text, "MIN_ONE_COLOUR", 0.7),),  # lines one colour explains less well are un-blended
    "belief_0.2": ((text, "MIN_BELIEF", 0.2),),
    "belief_0.5": ((text, "MIN_BELIEF", 0.5),),
    "belief_0.65": ((text, "MIN_BELIEF", 0.65),),
}


@contextlib.contextmanager
def patched(patches: tuple[Patch, ...]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for module, attribute, value in patches:
            stack.enter_context(mock.patch.object(module, attribute, value))
        yield


def variant(engine: MarkEngine, patches: tuple[Patch, ...]) -> Callable[[], bench.Method]:
    def method(sample: Sample) -> np.ndarray:
        with patched(patches):
            return engine.clean(sample.marked)

    return lambda: method


def line(name: str, summary: dict, set_name: str) -> str:
    marked = [f for f in bench.MARKED_FAMILIES if f in summary]
    cells = []
    if marked:
        cells.append("in mark %5.2f" % statistics.mean(summary[f][name]["psnr_w"] for f in marked))
        cells.append("whole %5.2f" % summary["all marked"][name]["psnr"])
        pooled = summary["all marked"][name]
        cells.append("IoU %.3f recall %.3f" % (pooled["iou"], pooled["recall"]))
        cells.append(" ".join("%s %5.2f" % (f, summary[f][name]["psnr_w"]) for f in marked))
    kept = {g: summary[g][name] for g in summary if g in bench.NO_MARK_FAMILIES or g in bench.NEGATIVE_KINDS}
    if set_name == "signs" and "signs" in summary:
        kept["signs"] = summary["signs"][name]
    if kept:
        cells.append("kept " + " ".join("%s %d/%d" % (g, round(s["kept"] * s["n"]), s["n"]) for g, s in kept.items()))
    return f"{name:13s} " + " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--sets", default="photos,signs,backdrops")
    parser.add_argument("--only", default=",".join(VARIANTS))
    args = parser.parse_args()
    engine = MarkEngine.load()
    chosen = {name: variant(engine, VARIANTS[name]) for name in args.only.split(",")}
    for set_name in args.sets.split(","):
        started = time.perf_counter()
        cases = bench.SETS[set_name](args.n, split="val")  # type: ignore[index]
        results = bench.run(cases, chosen)
        summary = bench.summarize(results)
        print(f"== val {set_name}: {len(cases)} images, {time.perf_counter() - started:.0f} s", flush=True)
        for name in chosen:
            print(line(name, summary, set_name), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
