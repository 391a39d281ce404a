"""Meta-tests that keep the layout honest: the core imports no platform, every failure has words."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from bot import errors, messages, picwish

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_MODULES = {"telegram", "slack_bolt", "slack_sdk", "adapters"}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "bot").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_imports_no_platform_library(path: Path) -> None:
    if path.name == "cli.py":
        return  # the composition root, which imports adapters lazily inside `run`
    assert imported_modules(path) & PLATFORM_MODULES == set()


def concrete_errors() -> list[type[errors.UnmarkError]]:
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.UnmarkError) and cls not in {errors.UnmarkError, errors.InputError}]


def example(cls: type[errors.UnmarkError]) -> errors.UnmarkError:
    samples: dict[type, errors.UnmarkError] = {
        errors.ImageTooSmall: errors.ImageTooSmall(5, 5, 20),
        errors.FileTooLarge: errors.FileTooLarge(60 * 2**20, 50 * 2**20),
        errors.QuotaExceeded: errors.QuotaExceeded(50, 0),
        errors.UnreadableFile: errors.UnreadableFile("x.png", "No such file"),
    }
    return samples.get(cls) or cls()


@pytest.mark.parametrize("cls", concrete_errors(), ids=lambda c: c.__name__)
def test_every_error_has_its_own_plain_sentence(cls: type[errors.UnmarkError]) -> None:
    sentence = messages.describe(example(cls))
    assert sentence != messages.INTERNAL_ERROR
    assert sentence[0].isupper() and sentence.endswith(".")
    assert "Traceback" not in sentence and "Error" not in sentence


def test_error_codes_are_unique() -> None:
    codes = [cls.code for cls in concrete_errors()]
    assert len(codes) == len(set(codes))


def test_every_documented_picwish_state_is_handled() -> None:
    doc = (ROOT.parent / "shared" / "picwish-api.md")
    if doc.exists():
        table = doc.read_text().split("**Task `data.state`:**", 1)[1].split("\n\n", 2)[1]
        documented = {int(m) for m in re.findall(r"^\| (-?\d) \|", table, re.M)}
    else:  # the shared notes are not beside every checkout
        documented = {-8, -7, -5, -3, -2, -1, 0, 1, 2, 3, 4}
    handled = set(picwish.FAILED_STATES) | set(picwish.PENDING_STATES) | {picwish.DONE}
    assert documented == handled


RUNTIME = ["bot/engine/*.py", "bot/removers.py", "bot/server/*.py", "bot/core.py"]


def lab_imports(path: Path) -> set[str]:
    """Every `bot.lab…` module a file names in an import statement, at any depth (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found |= {name for name in names if name == "bot.lab" or name.startswith("bot.lab.")}
    return found


@pytest.mark.parametrize("path", sorted(p for pattern in RUNTIME for p in ROOT.glob(pattern)),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_runtime_engine_imports_nothing_from_the_lab(path: Path) -> None:
    # The lab (synthesis, training, benchmark) brings fonts, Debian assets and torch; what `unmark clean` loads
    # must stand without it.
    assert lab_imports(path) == set()


def test_cleaning_an_image_loads_no_lab_module(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from bot.engine import MarkEngine\n"
            "MarkEngine.load().clean(np.full((64, 64, 3), 128, np.uint8))\n"
            "print(sorted(m for m in sys.modules if m.startswith('bot.lab')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
