"""What `unmark clean` costs on one 1 MP image, as a person runs it: wall time and peak memory, and where start-up goes.

    python benchmarks/startup.py            # 5 runs (median, min, max), then the start-up phases
    python benchmarks/startup.py --runs 9

Each run is a fresh `python -m bot clean photo.jpg` in its own empty folder (a new database, so no run is answered
from the result cache), with the local engine (no PICWISH_API_KEY). Peak memory is the child's own RSS high-water
mark (``wait4``). The phases are timed in one more child, in the order `unmark clean` meets them: importing the
command, importing the engine, loading its two networks, opening the database and the link client, cleaning
the image; what is left of a run's wall time is the interpreter's start and exit and writing the result.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1155, 866  # 1.0 MP, 4:3

PHASES = r"""
import asyncio, json, sys, time
from pathlib import Path
marks = {"start": time.perf_counter()}
import bot.cli, adapters.shell, bot.core, tqdm  # what `unmark clean` imports before it opens anything
marks["import the command"] = time.perf_counter()
from bot.engine import MarkEngine
marks["import the engine"] = time.perf_counter()
engine = MarkEngine.load()
marks["load its networks"] = time.perf_counter()
from bot.usage import UsageStore
async def open_db():
    async with UsageStore.open(Path("phases.sqlite3")):
        pass
asyncio.run(open_db())
marks["open the database"] = time.perf_counter()
import httpx
async def open_client():
    async with httpx.AsyncClient():  # the core's client for typed links: its TLS context is built at once
        pass
asyncio.run(open_client())
marks["open the link client"] = time.perf_counter()
from bot import images
image = images.load(Path("photo.jpg").read_bytes())
rgb, alpha, icc = images.to_array(image)[:3]
images.from_array(engine.clean(rgb), alpha, image.format, icc)
marks["clean the image"] = time.perf_counter()
names = list(marks)
print(json.dumps({b: marks[b] - marks[a] for a, b in zip(names, names[1:])}))
"""


def marked_photo() -> bytes:
    """A photo-like 1 MP JPEG with a semi-transparent text mark, so the engine has work to do."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([x * 255 / WIDTH, y * 255 / HEIGHT, (x + y) * 127 / (WIDTH + HEIGHT)], -1)
    pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    picture = PIL.Image.fromarray(pixels).convert("RGBA")
    layer = PIL.Image.new("RGBA", picture.size)
    PIL.ImageDraw.Draw(layer).text((WIDTH // 3, HEIGHT // 2), "SAMPLE WATERMARK", fill=(255, 255, 255, 150),
                                   font_size=64)
    out = io.BytesIO()
    PIL.Image.alpha_composite(picture, layer).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def environment() -> dict[str, str]:
    """This environment without any unmark setting, so the local engine runs on a fresh database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICWISH_", "UNMARK_", "TELEGRAM_", "SLACK_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def one_run(photo: bytes) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one `unmark clean` in a fresh folder."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "photo.jpg").write_bytes(photo)
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "bot", "clean", "photo.jpg"], cwd=folder, env=environment(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        if status != 0:
            raise SystemExit(f"unmark clean failed: {child.stderr.read().decode() if child.stderr else status}")
        if not Path(folder, "unmark-out", "photo-clean.jpg").exists():
            raise SystemExit("unmark clean wrote no result")
        return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def phases(photo: bytes) -> dict[str, float]:
    """Seconds spent in each start-up phase, in one fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "photo.jpg").write_bytes(photo)
        out = subprocess.run([sys.executable, "-c", PHASES], cwd=folder, env=environment(), check=True,
                             capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of `unmark clean` (default 5)")
    args = parser.parse_args()
    photo = marked_photo()
    print(f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"`unmark clean photo.jpg` on a {WIDTH}x{HEIGHT} JPEG, local engine, {args.runs} runs")
    runs = [one_run(photo) for _ in range(args.runs)]
    seconds = [s for s, _ in runs]
    peaks = [m for _, m in runs]
    print(f"wall time: median {statistics.median(seconds):.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f})")
    print(f"peak RSS:  median {statistics.median(peaks):.0f} MiB (max {max(peaks):.0f})")
    print("where one run's time goes:")
    for name, spent in phases(photo).items():
        print(f"  {name:<20} {spent:6.2f} s")


if __name__ == "__main__":
    main()
