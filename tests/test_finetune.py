"""Fine-tuned finders (bot.lab.finetune): their exported one-output graph matches torch, the engine's Segmenter
loads it by its note, and MarkEngine runs with it. Needs the [train] extra (skipped without torch); the
EfficientNet-Lite0 finder is built without its ImageNet weights (its shape is all the round trip needs), and the
PP-OCRv6 one only where its det.onnx is already in the cache (it is never downloaded by a test)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from bot.engine.segmenter import Segmenter, to_input

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


def _exported(tmp_path: Path, arch: str) -> tuple[object, Path]:
    from bot.lab import finetune, train

    config = finetune.FinetuneConfig(arch=arch, steps=1)
    torch.manual_seed(3)
    net = finetune.build(config, pretrained=False)
    with torch.no_grad():  # move the weights off their start, so a graph that ignored them would not match
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    train._save(tmp_path / "checkpoint.pt", net, torch.optim.AdamW(net.parameters()), config, 1, 1.0)
    return net.eval(), finetune.export(tmp_path)


def _check_round_trip(net: object, path: Path) -> None:
    note = json.loads(path.with_suffix(".json").read_text())
    assert note["kind"] == "probability" and note["outputs"] == ["mask"] and note["pretrained"]["licence"]
    segmenter = Segmenter.load(path)
    rgb = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    seen = segmenter.predict(rgb)
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.from_numpy(to_input(rgb, seen.mask.shape)))["mask"])[0, 0].numpy()
    assert seen.mask.shape == (96, 160) == seen.alpha.shape and seen.colour.shape == (96, 160, 3)
    assert np.abs(seen.mask - expected).max() < 1e-4
    assert not seen.alpha.any() and not seen.colour.any()  # a finder has no opacity or colour head


def test_an_exported_effnet_finder_matches_torch_and_the_engine_loads_it(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    from bot.engine.mark import MarkEngine

    net, path = _exported(tmp_path, "effnet")
    _check_round_trip(net, path)
    engine = MarkEngine(Segmenter.load(path))
    photo = np.random.default_rng(1).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    assert engine.clean(photo).shape == photo.shape


def test_an_exported_ppocr_finder_matches_torch(tmp_path: Path) -> None:
    from bot.lab import finetune

    if importlib.util.find_spec("onnx2torch") is None and not any(finetune.CACHE.glob("onnx2torch-*/onnx2torch")):
        pytest.skip("onnx2torch is neither installed nor in the cache (python -m bot.lab.finetune fetches it)")

    _, member, _ = finetune.PRETRAINED["ppocr"]
    if not (finetune.CACHE / member).is_file():
        pytest.skip("PP-OCRv6 tiny det.onnx not in the cache (python -m bot.lab.finetune fetches it)")
    net, path = _exported(tmp_path, "ppocr")
    _check_round_trip(net, path)


def test_the_note_decides_the_kind(tmp_path: Path) -> None:
    from bot.engine.segmenter import model_kind

    path = tmp_path / "finder.onnx"
    assert model_kind(path, ["mask", "alpha", "colour"]) == "heads"
    assert model_kind(path, ["probability"]) == "probability"
    path.with_suffix(".json").write_text(json.dumps({"kind": "probability", "outputs": ["mask"]}))
    with pytest.raises(ValueError, match="one probability output"):
        model_kind(path, ["mask", "alpha", "colour"])
