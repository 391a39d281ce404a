"""Trains the watermark segmenter (bot.lab.model) on synthetic marks and exports it to ONNX.

Training
--------
Needs the ``[train]`` extra (torch, onnx; never a run-time dependency) and the Debian assets
(``benchmarks/assets.sh``; without them synthesis falls back to procedural photos-free stand-ins and the model is
useless). One command, resumable::

    nohup python -m bot.lab.train --out /tmp/seg --minutes 90 > /tmp/seg.out 2>&1 &
    tail -f /tmp/seg/train.log
    python -m bot.lab.train --out /tmp/seg --minutes 90 --resume   # after an interruption
    python -m bot.lab.train --out /tmp/seg --export                # only re-export the last checkpoint
    python -m bot.lab.train --out /tmp/seg2 --init /tmp/seg/segmenter.pt --seed 1 --minutes 80  # fine-tune

``--init`` starts a new run (fresh optimiser, warm-up and schedule, its own data stream) from another run's
weights (its segmenter.pt, or its checkpoint.pt): how a model is trained further on new photos, or for longer
than one session, without redoing the first run. The note records the weights it started from.

Data: every batch is drawn on the fly by ``synth.synthesize`` from the *train* split of assets.py (photos, fonts,
logos), families text/tiled/logo/stamp plus about 26 % negatives: clean images, the four photos of real scene text,
and signs (text drawn into the scene with its perspective, light and blur: signs.py, since four photos are too few
to teach what real text looks like). All but real text are drawn on an image of a kind picked by KIND_WEIGHTS
(photos mostly; greyscale photos, product shots, screenshots, rendered document pages, illustrations). Every image
is first jittered (exposure, colour, blur, noise: synth.py) so that a few hundred look like many more. Each sample
is drawn on a canvas of a random side in CANVAS_SIDES (marks are sized relative to the canvas) and then cut to the
--size crop, centred near a marked pixel when there is one: the network so sees marks at several scales relative to
its window, which is what it meets on a downscaled proxy of a whole photo. Batches come from one DataLoader worker
so that data and the two torch threads share the two cores. Losses: BCE + Dice on the mask (target alpha >
MASK_THRESHOLD), L1 on alpha inside the mask (plus a small weight outside), L1 on the colour W / 255 inside the mask.
AdamW with a warm-up then cosine decay over the run's budget (``--steps`` or ``--minutes``, whichever ends first: a
time budget makes the schedule depend on the machine's speed, so a run is reproducible only with ``--steps``). Where
the CPU computes bfloat16 natively (AVX-512 BF16, AMX), the forward pass runs in it under autocast (``--bf16``, on by
default there): the weights, the optimiser and the losses stay float32, and the exported graph is float32 like any
other.

Output in --out: checkpoint.pt every CHECKPOINT_MINUTES (model, optimiser, step, elapsed time, RNG states);
train.log, one line per --log-every steps; at the end segmenter.onnx (opset 17, dynamic H and W, input ``image``
N×3×H×W RGB in [0, 1], outputs ``mask``, ``alpha``, ``colour`` probabilities), segmenter.json (how it was made)
and segmenter.pt (the weights alone, for ``--init``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from bot.lab import assets
from bot.lab.model import OUTPUT_NAMES, Exported, LiteUNet, count_parameters
from bot.lab.synth import MASK_THRESHOLD, synthesize

__all__ = ["Config", "SyntheticBatches", "export", "losses", "main", "train"]

FAMILY_WEIGHTS = {"text": 0.24, "tiled": 0.19, "logo": 0.18, "stamp": 0.13, "clean": 0.12, "scenetext": 0.06,
                  "signs": 0.08}
CANVAS_SIDES = (256, 320, 384, 448, 512)  # a sample's mark is drawn relative to one of these, then cropped
PHOTO_MAX_PIXELS = 1_500_000  # photos are decoded once per worker at most this big (the train split ≈ 1.7 GB)
# Which kind of clean image a marked or clean sample is drawn on (assets.BACKGROUND_KINDS; a kind not installed is
# skipped and the others weigh more): mostly photos, but marks land on pages, screens and drawings too, and those
# must otherwise come back untouched.
KIND_WEIGHTS = {"photo": 0.55, "grey": 0.07, "product": 0.06, "screenshot": 0.1, "document": 0.1,
                "illustration": 0.12}
UNMIRRORED_KINDS = ("screenshot", "document")  # mirrored, their text would be no text
CHECKPOINT_MINUTES = 3.0
WARMUP_STEPS = 100  # linear warm-up ends after this many steps or WARMUP_FRACTION of the budget, if sooner
WARMUP_FRACTION = 0.03
MIN_LR_FRACTION = 0.02
ALPHA_OUTSIDE_WEIGHT = 0.1  # alpha should also be ~0 off the mark, but the mask head decides where the mark is
OPSET = 17


@dataclass(frozen=True, slots=True)
class Config:
    """One training run; stored in the checkpoint and in segmenter.json."""

    seed: int = 0
    steps: int | None = None  # stop after this many steps...
    minutes: float | None = None  # ...or after this much training time, whichever comes first
    batch: int = 16
    size: int = 256  # the training crop side, a multiple of 32
    width: float = 3.0  # LiteUNet channel multiplier (566 k parameters; 1.5 gives 149 k)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    threads: int = 2
    workers: int = 1
    log_every: int = 20
    init: str | None = None  # the weights this run started from (None: random)
    bf16: bool = False  # the forward pass in bfloat16 (weights stay float32): 1.4-1.9x faster where the CPU has AMX


class SyntheticBatches(IterableDataset):
    """An endless stream of (image, alpha, colour) batches synthesised from the train split; config needs only
    seed, batch and size (bot.lab.finetune streams the same data with its own config).

    Seeded by (seed, start step, worker), so a resumed run draws fresh, reproducible data rather than repeating
    the batches it already saw."""

    def __init__(self, config: Config, start_step: int = 0) -> None:
        self.config = config
        self.start_step = start_step

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None:
            cv2.setNumThreads(1)  # the worker shares two cores with torch's threads: no OpenCV thread pool on top
        rng = np.random.default_rng([self.config.seed, self.start_step, worker])
        pools = {kind: [assets.load_photo(p, PHOTO_MAX_PIXELS, grey=kind == "grey")
                        for p in assets.photos("train", kind)] for kind in KIND_WEIGHTS}
        pools = {kind: pool for kind, pool in pools.items() if pool}
        photos = pools.get("photo", [])
        scenes = [assets.load_photo(p, PHOTO_MAX_PIXELS) for p in assets.photos("train", "scenetext")] or photos
        if not photos:
            raise RuntimeError("no training photos installed: run benchmarks/assets.sh first")
        kinds = list(pools)
        kind_p = np.array([KIND_WEIGHTS[k] for k in kinds])
        kind_p /= kind_p.sum()
        fonts, logos = assets.fonts("train"), assets.logos("train")
        families = list(FAMILY_WEIGHTS)
        weights = np.array(list(FAMILY_WEIGHTS.values()))
        crop = self.config.size
        canvases = [s for s in CANVAS_SIDES if s >= crop] or [crop]
        while True:
            images, alphas, colours = [], [], []
            for family in rng.choice(families, size=self.config.batch, p=weights / weights.sum()):
                kind = "scenetext" if family == "scenetext" else kinds[int(rng.choice(len(kinds), p=kind_p))]
                pool = scenes if family == "scenetext" else pools[kind]
                side = int(rng.choice(canvases))
                sample = synthesize(pool[int(rng.integers(len(pool)))], str(family), rng, fonts=fonts, logos=logos,
                                    size=(side, side), jitter=True, mirror=False if kind in UNMIRRORED_KINDS else None)
                window = _window(sample.alpha, crop, rng)
                images.append(sample.marked[window])
                alphas.append(sample.alpha[window])
                colours.append(sample.colour[window])
            yield (
                torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255),
                torch.from_numpy(np.stack(alphas))[:, None],
                torch.from_numpy(np.stack(colours)).permute(0, 3, 1, 2).div_(255),
            )


def _window(alpha: np.ndarray, crop: int, rng: np.random.Generator) -> tuple[slice, slice]:
    """A crop x crop window of a canvas: around a random marked pixel (jittered) when the canvas has a mark, so
    small corner stamps stay in view, else anywhere."""
    h, w = alpha.shape
    ys, xs = np.nonzero(alpha > MASK_THRESHOLD)
    if ys.size and rng.random() < 0.9:
        i = int(rng.integers(ys.size))
        cy, cx = ys[i] + rng.integers(-crop // 3, crop // 3 + 1), xs[i] + rng.integers(-crop // 3, crop // 3 + 1)
        y, x = int(np.clip(cy - crop // 2, 0, h - crop)), int(np.clip(cx - crop // 2, 0, w - crop))
    else:
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return np.s_[y : y + crop, x : x + crop]


def losses(heads: dict[str, torch.Tensor], alpha: torch.Tensor, colour: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss parts; "total" is what is minimised (the alpha and colour parts only for heads that have them).
    alpha N×1×H×W in [0, 1], colour N×3×H×W in [0, 1]."""
    target = (alpha > MASK_THRESHOLD).float()
    logit = heads["mask"]
    bce = F.binary_cross_entropy_with_logits(logit, target)
    prob = torch.sigmoid(logit)
    # Dice over the whole batch, so the many clean crops (empty targets) do not make it undefined.
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    inside = target.sum().clamp_min(1)
    parts = {"bce": bce, "dice": dice}
    if "alpha" in heads:  # the fine-tuned finders (bot.lab.finetune) have a mask head only
        error = (heads["alpha"] - alpha).abs()
        parts["alpha"] = (error * target).sum() / inside + ALPHA_OUTSIDE_WEIGHT * (error * (1 - target)).mean()
    if "colour" in heads:
        parts["colour"] = ((heads["colour"] - colour).abs() * target).sum() / (3 * inside)
    parts["total"] = sum(parts.values())  # type: ignore[assignment]
    return parts


def _lr_factor(step: int, progress: float) -> float:
    """Linear warm-up, then cosine from 1 to MIN_LR_FRACTION as progress goes 0 -> 1."""
    warm = max((step + 1) / WARMUP_STEPS, progress / WARMUP_FRACTION)
    if warm < 1:
        return warm
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(out: Path, config: Config, *, resume: bool = False) -> Path:
    """Train (or resume) in out/, then export; returns the ONNX path."""
    if config.steps is None and config.minutes is None:
        raise ValueError("give --steps or --minutes")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    net = LiteUNet(config.width).to(memory_format=torch.channels_last)  # ~1.7x faster convolutions on the CPU
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, elapsed = 0, 0.0
    checkpoint = out / "checkpoint.pt"
    if resume and checkpoint.is_file():
        step, elapsed = _restore(checkpoint, net, optimiser)
    else:
        if config.init is not None:
            net.load_state_dict(torch.load(config.init, weights_only=False)["model"])
        _log(out, f"start {json.dumps(asdict(config))}; params {count_parameters(net)}; widths {net.widths}")
    run_steps(out, net, optimiser, config, step, elapsed, lr=config.lr, channels_last=True)
    return export(out)


def saved_config(out: Path, steps: int | None, minutes: float | None) -> dict[str, object] | None:
    """The config of the run checkpointed in out/, None without one: its shape (seed, width, batch, ...) comes
    from the checkpoint, and the budgets given now, if any, replace its own (so a resumed run may be extended)."""
    checkpoint = out / "checkpoint.pt"
    if not checkpoint.is_file():
        return None
    saved: dict[str, object] = torch.load(checkpoint, weights_only=False)["config"]
    saved.update({k: v for k, v in (("steps", steps), ("minutes", minutes)) if v is not None})
    return saved


def _restore(checkpoint: Path, net: torch.nn.Module, optimiser: torch.optim.Optimizer) -> tuple[int, float]:
    """Load a checkpoint into net, optimiser and torch's RNG; returns the (step, elapsed seconds) it was saved at."""
    state = torch.load(checkpoint, weights_only=False)
    net.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    torch.set_rng_state(state["torch_rng"])
    _log(checkpoint.parent, f"resumed at step {state['step']} after {state['elapsed'] / 60:.1f} min")
    return state["step"], state["elapsed"]


def run_steps(out: Path, net: torch.nn.Module, optimiser: torch.optim.Optimizer, config: Config, step: int,
              elapsed: float, *, lr: float, channels_last: bool = False, clip: float | None = None) -> None:
    """The training loop both trainers share (this module's and bot.lab.finetune's): synthetic batches from `step`
    on, each optimiser group at lr times its "scale" (1 without one) on _lr_factor's schedule, until config.steps
    or config.minutes run out; a log line every config.log_every steps, out/checkpoint.pt every
    CHECKPOINT_MINUTES and at the end. channels_last: the batches in the memory format the net was moved to;
    clip: the gradients' largest norm, if any."""
    checkpoint = out / "checkpoint.pt"
    loader = DataLoader(SyntheticBatches(config, step), batch_size=None, num_workers=config.workers,
                        persistent_workers=config.workers > 0, prefetch_factor=2 if config.workers else None)
    net.train()
    started = time.perf_counter() - elapsed
    last_save = last_log = time.perf_counter()
    images_since_log = 0
    totals: dict[str, float] = {}
    for image, alpha, colour in loader:
        elapsed = time.perf_counter() - started
        budget = [step / config.steps] if config.steps else []
        budget += [elapsed / (60 * config.minutes)] if config.minutes else []
        if max(budget) >= 1:
            break
        for group in optimiser.param_groups:
            group["lr"] = lr * group.get("scale", 1.0) * _lr_factor(step, max(budget))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            heads = net(image.contiguous(memory_format=torch.channels_last) if channels_last else image)
        parts = losses({name: head.float() for name, head in heads.items()}, alpha, colour)
        optimiser.zero_grad(set_to_none=True)
        parts["total"].backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimiser.step()
        step += 1
        images_since_log += image.shape[0]
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + float(value.detach())
        if step % config.log_every == 0:
            now = time.perf_counter()
            means = " ".join(f"{k} {v / config.log_every:.4f}" for k, v in totals.items())
            # The last group's rate: the only one here, the decoder's (scale 1) in a fine-tune.
            _log(out, f"step {step} min {elapsed / 60:.1f} lr {optimiser.param_groups[-1]['lr']:.2e} {means} "
                      f"img/s {images_since_log / (now - last_log):.1f}")
            totals, images_since_log, last_log = {}, 0, now
        if time.perf_counter() - last_save > 60 * CHECKPOINT_MINUTES:
            _save(checkpoint, net, optimiser, config, step, time.perf_counter() - started)
            last_save = time.perf_counter()
    _save(checkpoint, net, optimiser, config, step, time.perf_counter() - started)


def _save(path: Path, net: torch.nn.Module, optimiser: torch.optim.Optimizer, config: Config, step: int,
          elapsed: float) -> None:
    """Write atomically (temp file then rename), so a kill mid-save keeps the previous checkpoint."""
    state = {"model": net.state_dict(), "optimiser": optimiser.state_dict(), "config": asdict(config),
             "step": step, "elapsed": elapsed, "torch_rng": torch.get_rng_state()}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    _log(path.parent, f"checkpoint at step {step}")


def export(out: Path) -> Path:
    """Export out/checkpoint.pt to out/segmenter.onnx, describe it in out/segmenter.json, and keep its weights
    alone in out/segmenter.pt: what ``--init`` needs to train the network further once it ships (the ONNX
    graph has its batch norms folded into the convolutions, so it cannot be trained on)."""
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    config = Config(**state["config"])
    net = LiteUNet(config.width)
    net.load_state_dict(state["model"])
    torch.save({"model": state["model"], "config": state["config"]}, out / "segmenter.pt")
    wrapped = Exported(net).eval()
    path = out / "segmenter.onnx"
    dummy = torch.rand(1, 3, 64, 64)
    names = list(OUTPUT_NAMES[: 3 if net.channels == 5 else 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: dynamic_axes just works
        torch.onnx.export(wrapped, (dummy,), str(path), opset_version=OPSET, input_names=["image"],
                          output_names=names, dynamo=False,
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, **{n: {0: "n", 2: "h", 3: "w"}
                                                                                for n in names}})
    note = {
        "data": {"split": "train", "photos": len(assets.photos("train")),
                 "scenetext": len(assets.photos("train", "scenetext")),
                 "kinds": {kind: len(assets.photos("train", kind)) for kind in KIND_WEIGHTS},
                 "kind_weights": KIND_WEIGHTS, "fonts": len(assets.fonts("train")),
                 "logos": len(assets.logos("train")), "families": FAMILY_WEIGHTS, "canvas_sides": list(CANVAS_SIDES),
                 "photo_jitter": True},
        "config": state["config"],
        "steps": state["step"],
        "images": state["step"] * config.batch,
        "minutes": round(state["elapsed"] / 60, 2),
        "machine": {"node": platform.node(), "cpu": _cpu_name(),
                    "threads": config.threads, "system": platform.platform()},
        "params": count_parameters(net),
        "widths": list(net.widths),
        "onnx_bytes": path.stat().st_size,
        "opset": OPSET,
        "outputs": names,
        "torch": torch.__version__,
    }
    first = Path(config.init).parent / "segmenter.json" if config.init else None
    if first is not None and first.is_file():
        # A fine-tune's model is both runs: keep how the first was made beside how this one was.
        note["started_from"] = {k: v for k, v in json.loads(first.read_text()).items()
                                if k in ("data", "config", "steps", "images", "minutes", "started_from")}
    (out / "segmenter.json").write_text(json.dumps(note, indent=2) + "\n")
    _log(out, f"exported {path} ({path.stat().st_size} bytes)")
    return path


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is often empty on Linux) and the core count."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.machine()
    return f"{name} x{os.cpu_count()}"


def _bf16_is_native() -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and
    slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _log(out: Path, line: str) -> None:
    stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"
    print(stamped, flush=True)
    with open(out / "train.log", "a") as log:
        log.write(stamped + "\n")


def main(argv: list[str] | None = None) -> None:
    """`python -m bot.lab.train --out DIR [--minutes M] [--steps N] ...`; see the module docstring."""
    defaults = Config()
    parser = argparse.ArgumentParser(prog="python -m bot.lab.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for checkpoint, log, ONNX and note")
    parser.add_argument("--minutes", type=float, help="training-time budget (the LR schedule follows it)")
    parser.add_argument("--steps", type=int, help="step budget (reproducible; takes precedence when shorter)")
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--size", type=int, default=defaults.size, help="smallest crop side, a multiple of 32")
    parser.add_argument("--width", type=float, default=defaults.width, help="channel multiplier of the network")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="data-synthesis processes")
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=_bf16_is_native(),
                        help="forward pass in bfloat16 (default: on where the CPU computes it natively)")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    parser.add_argument("--export", action="store_true", help="only export DIR/checkpoint.pt to ONNX")
    parser.add_argument("--init", type=Path,
                        help="start from these weights: a checkpoint.pt or segmenter.pt (same --width)")
    args = parser.parse_args(argv)
    if args.export:
        export(args.out)
        return
    if args.size % 32:
        parser.error("--size must be a multiple of 32")
    saved = saved_config(args.out, args.steps, args.minutes) if args.resume else None
    if saved is not None:
        config = Config(**saved)  # type: ignore[arg-type]
    else:
        config = Config(seed=args.seed, steps=args.steps, minutes=args.minutes, batch=args.batch, size=args.size,
                        width=args.width, lr=args.lr, threads=args.threads, workers=args.workers,
                        log_every=args.log_every, init=str(args.init) if args.init else None, bf16=args.bf16)
    if config.steps is None and config.minutes is None:
        parser.error("give --steps or --minutes")
    train(args.out, config, resume=args.resume)


if __name__ == "__main__":
    main()
