"""The ONNX segmenter loader: proxy pre/post-processing, broken model files, and (with torch) an export round trip.

Only the round trip needs the [train] extra (torch, onnx); it builds an untrained network, so no weights are needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bot.engine.segmenter import (
    MULTIPLE,
    PROXY_MAX_SIDE,
    Segmenter,
    proxy_size,
    to_input,
)
from bot.errors import EngineBroken


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (3000, 4000, (480, 640)),  # shrunk to the long side, sides multiples of 32
        (10000, 20, (640, 32)),  # a thin strip keeps at least one multiple
        (20, 20, (32, 32)),  # tiny images are padded up to the network's stride
        (500, 600, (512, 608)),  # small enough: only rounded
    ],
)
def test_proxy_size_fits_the_long_side_in_multiples_of_32(height: int, width: int, expected: tuple[int, int]) -> None:
    size = proxy_size(height, width)

    assert size == expected
    assert all(side % MULTIPLE == 0 for side in size)
    assert max(size) <= PROXY_MAX_SIDE


def test_to_input_is_nchw_float_in_unit_range() -> None:
    rgb = np.zeros((90, 120, 3), np.uint8)
    rgb[..., 0] = 255

    batch = to_input(rgb, (64, 96))

    assert batch.shape == (1, 3, 64, 96) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert np.allclose(batch[0, 0], 1.0) and np.allclose(batch[0, 1:], 0.0)


def test_a_missing_model_is_a_broken_engine(tmp_path: Path) -> None:
    with pytest.raises(EngineBroken, match="not found"):
        Segmenter.load(tmp_path / "nope.onnx")


def test_a_corrupt_model_is_a_broken_engine(tmp_path: Path) -> None:
    path = tmp_path / "segmenter.onnx"
    path.write_bytes(b"\x08\x07not an onnx graph" * 10)

    with pytest.raises(EngineBroken, match="cannot load"):
        Segmenter.load(path)


def test_an_exported_network_loads_and_matches_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")  # the exporter needs it; both come with the [train] extra
    from bot.lab import train
    from bot.lab.model import LiteUNet

    config = train.Config(seed=1, steps=1, width=0.5)
    torch.manual_seed(config.seed)
    net = LiteUNet(config.width)
    train._save(tmp_path / "checkpoint.pt", net, torch.optim.AdamW(net.parameters()), config, 1, 1.0)
    segmenter = Segmenter.load(train.export(tmp_path))
    rgb = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)

    seen = segmenter.predict(rgb)
    with torch.no_grad():
        heads = net.eval()(torch.from_numpy(to_input(rgb, (64, 96))))

    assert seen.mask.shape == seen.alpha.shape == (64, 96) and seen.mask.dtype == np.float32
    assert np.allclose(seen.mask, torch.sigmoid(heads["mask"])[0, 0].numpy(), atol=1e-4)
    assert np.allclose(seen.alpha, heads["alpha"][0, 0].numpy(), atol=1e-4)
    assert np.allclose(seen.colour, 255 * heads["colour"][0].permute(1, 2, 0).numpy(), atol=1e-2)
    assert np.allclose(seen.image * 255, rgb, atol=1e-3)
    assert (tmp_path / "segmenter.json").is_file()
    # Any size works: the proxy is rounded to the network's stride.
    assert segmenter.predict(rgb[:50, :70]).mask.shape == (64, 64)


def test_a_fine_tune_starts_from_the_given_checkpoint_and_says_so(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from PIL import Image

    from bot.lab import assets, train
    from bot.lab.model import LiteUNet

    photo = tmp_path / "photo.png"  # one small photo instead of the installed ones: fast, and needs no assets
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(photo)
    monkeypatch.setattr(assets, "photos", lambda split, kind="photo": (photo,))
    first = tmp_path / "first"
    first.mkdir()
    torch.manual_seed(7)
    net = LiteUNet(0.5)
    train._save(first / "checkpoint.pt", net, torch.optim.AdamW(net.parameters()),
                train.Config(seed=7, steps=1, width=0.5), 1, 1.0)
    train.export(first)

    # The exported weights (what ships beside the ONNX graph) are enough to go on from. A learning rate of 0
    # keeps the weights where the run started: the first run's, not a fresh draw.
    second = tmp_path / "second"
    train.train(second, train.Config(seed=1, steps=1, batch=2, width=0.5, lr=0.0, workers=0,
                                     init=str(first / "segmenter.pt")))
    tuned = torch.load(second / "checkpoint.pt", weights_only=False)["model"]
    for name, value in net.state_dict().items():
        if name in dict(net.named_parameters()):
            assert torch.equal(tuned[name], value), name
    note = json.loads((second / "segmenter.json").read_text())
    assert note["config"]["init"] == str(first / "segmenter.pt")
    assert note["started_from"]["config"]["seed"] == 7


def test_a_bf16_run_trains_float32_weights_and_exports_a_float32_graph(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from PIL import Image

    from bot.lab import assets, train
    from bot.lab.model import LiteUNet

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(photo)
    monkeypatch.setattr(assets, "photos", lambda split, kind="photo": (photo,))
    torch.manual_seed(3)
    start = LiteUNet(0.5).state_dict()
    path = train.train(tmp_path, train.Config(seed=3, steps=2, batch=2, width=0.5, workers=0, bf16=True))

    weights = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    assert all(v.dtype == torch.float32 for k, v in weights.items() if v.is_floating_point()), "weights stay float32"
    assert not torch.equal(weights["stem.0.weight"], start["stem.0.weight"]), "the steps moved the weights"
    assert json.loads((tmp_path / "segmenter.json").read_text())["config"]["bf16"] is True
    heads = Segmenter.load(path).predict(np.zeros((64, 64, 3), np.uint8))
    assert heads.mask.dtype == np.float32 and np.isfinite(heads.mask).all()


def test_an_exported_network_unfolds_into_the_same_network_with_batch_norms_to_train(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from bot.lab import train, unfold
    from bot.lab.model import LiteUNet

    torch.manual_seed(3)
    net = LiteUNet(0.5)
    for module in net.modules():  # trained-looking statistics, so that folding them in changes the weights
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    train._save(tmp_path / "checkpoint.pt", net, torch.optim.AdamW(net.parameters()),
                train.Config(steps=1, width=0.5), 1, 1.0)
    calibration = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))

    exported = train.export(tmp_path)
    unfolded = unfold.unfold(exported, 0.5, calibration)

    image = torch.rand(1, 3, 96, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = net.eval()(image), unfolded.eval()(image)
        assert all(torch.allclose(got[k], expected[k], atol=1e-4) for k in expected)
        # Training normalises with each batch's own statistics: on the calibration batch that changes nothing.
        trained, reference = unfolded.train()(calibration)["mask"], net.eval()(calibration)["mask"]
    assert torch.allclose(trained, reference, atol=1e-3)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules())
    with pytest.raises(ValueError, match="does not fit a width-1.0 network"):
        unfold.unfold(exported, 1.0, calibration)


def test_the_shipped_weights_are_the_shipped_network() -> None:
    torch = pytest.importorskip("torch")
    from bot.engine.mark import SEGMENTER
    from bot.lab.model import LiteUNet
    from bot.lab.unfold import largest_difference

    saved = torch.load(SEGMENTER.with_suffix(".pt"), weights_only=False)
    net = LiteUNet(saved["config"]["width"])
    net.load_state_dict(saved["model"])

    assert largest_difference(SEGMENTER, net) <= 1e-4


def test_the_shipped_finder_loads_as_a_probability_graph_beside_the_segmenter() -> None:
    from bot.engine.mark import FINDER as finder

    note = json.loads(finder.with_suffix(".json").read_text())
    assert note["kind"] == "probability" and note["pretrained"]["licence"] == "Apache-2.0"
    seen = Segmenter.load(finder, threads=1).predict(np.full((90, 130, 3), 200, np.uint8))
    assert seen.mask.shape == (96, 128) and 0 <= seen.mask.min() and seen.mask.max() <= 1
    assert not seen.alpha.any()
