"""Recovers trainable weights from an exported segmenter, so a network that ships as ONNX alone can be trained on.

Exporting folds each batch norm into the convolution before it (W' = W γ / σ, b' = β - μ γ / σ), which is what
the engine runs, but a folded convolution has no batch norm left to train with. Unfolding puts one back that
changes nothing: the convolution keeps W' and, on a calibration batch of training samples, each batch norm gets
that batch's statistics of its input (μ_B, σ_B) as its running statistics, γ = σ_B and β = b' + μ_B. In eval mode
it is then exactly the exported network, and in train mode it is the same network on that batch (and about it
on others), so training goes on from where the export left off instead of from a disrupted network::

    python -m bot.lab.unfold bot/engine/models/segmenter.onnx      # writes segmenter.pt beside it

and ``python -m bot.lab.train --init bot/engine/models/segmenter.pt ...`` trains the shipped network further.
Needs the ``[train]`` extra (torch, onnx) and, for the calibration batch, the Debian assets.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bot.lab.model import LiteUNet
from bot.engine.segmenter import Segmenter, to_input

__all__ = ["CALIBRATION_BATCHES", "largest_difference", "main", "unfold"]

CALIBRATION_BATCHES = 4  # training batches whose statistics the batch norms take (16 samples each)


def unfold(onnx_path: Path, width: float, calibration: torch.Tensor) -> LiteUNet:
    """A LiteUNet of this width that computes what the ONNX graph does, with batch norms to train.

    calibration: N×3×H×W training images in [0, 1] whose statistics the batch norms take."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    folded = [[weights[name] for name in node.input[1:]] for node in graph.node if node.op_type == "Conv"]
    net = LiteUNet(width).eval()
    convs = list(_inputs(net, (m for m in net.modules() if isinstance(m, nn.Conv2d)), calibration[:1]))
    if len(convs) != len(folded):
        raise ValueError(f"{onnx_path} has {len(folded)} convolutions, a width-{width} network {len(convs)}")
    norms = _batch_norms(net)
    with torch.no_grad():
        for conv, (weight, *bias) in zip(convs, folded, strict=True):
            if tuple(conv.weight.shape) != weight.shape:
                raise ValueError(f"{onnx_path} does not fit a width-{width} network: "
                                 f"{weight.shape} against {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.tensor(weight))
            shift = torch.tensor(bias[0]) if bias else torch.zeros(weight.shape[0])
            if conv in norms:  # first an identity plus the folded bias, so the calibration sees the export
                norm = norms[conv]
                norm.weight.fill_(1.0)
                norm.bias.copy_(shift)
                norm.running_mean.zero_()
                norm.running_var.fill_(1.0 - norm.eps)
            else:
                conv.bias.copy_(shift)
        inputs = _inputs(net, norms.values(), calibration)
        for norm, seen in inputs.items():
            mean, var = seen.mean((0, 2, 3)), seen.var((0, 2, 3), unbiased=False)
            norm.bias.add_(mean)
            norm.weight.copy_(torch.sqrt(var + norm.eps))
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
    return net


def _batch_norms(net: LiteUNet) -> dict[nn.Conv2d, nn.BatchNorm2d]:
    """Each convolution that a batch norm follows (model._conv_bn's Sequential), with that batch norm."""
    pairs = {}
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            pairs.update({a: b for a, b in itertools.pairwise(module)
                          if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d)})
    return pairs


def _inputs(net: LiteUNet, modules: Iterable[nn.Module], batch: torch.Tensor) -> dict[nn.Module, torch.Tensor]:
    """What each of the modules receives when the network runs on batch, in the order they run (which is the
    order the export wrote them in)."""
    seen: dict[nn.Module, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, i, o: seen.__setitem__(m, i[0].detach())) for m in modules]
    with torch.no_grad():
        net(batch)
    for hook in hooks:
        hook.remove()
    return seen


def _calibration(width: float) -> torch.Tensor:
    """CALIBRATION_BATCHES training batches, drawn as training draws them (the train split, fixed seed)."""
    from bot.lab.train import Config, SyntheticBatches

    batches = iter(SyntheticBatches(Config(seed=0, width=width)))
    return torch.cat([next(batches)[0] for _ in range(CALIBRATION_BATCHES)])


def main(argv: list[str] | None = None) -> None:
    """`python -m bot.lab.unfold MODEL.onnx`: write MODEL.pt beside it (its width from MODEL.json)."""
    parser = argparse.ArgumentParser(prog="python -m bot.lab.unfold", description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path, help="an exported segmenter, with its .json note beside it")
    args = parser.parse_args(argv)
    note = json.loads(args.onnx.with_suffix(".json").read_text())
    width = float(note["config"]["width"])
    net = unfold(args.onnx, width, _calibration(width))
    out = args.onnx.with_suffix(".pt")
    torch.save({"model": net.state_dict(), "config": note["config"], "unfolded_from": args.onnx.name}, out)
    print(f"wrote {out}; {largest_difference(args.onnx, net):.2e} from the ONNX graph on a random image")


def largest_difference(onnx_path: Path, net: LiteUNet) -> float:
    """The largest difference between the unfolded network's mask probability and the engine's (the ONNX graph
    run as the engine runs it) on a random image."""
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    seen = Segmenter.load(onnx_path).predict(rgb)
    with torch.no_grad():
        got = torch.sigmoid(net.eval()(torch.from_numpy(to_input(rgb, seen.mask.shape)))["mask"])[0, 0].numpy()
    return float(np.abs(got - seen.mask).max())


if __name__ == "__main__":
    main()
