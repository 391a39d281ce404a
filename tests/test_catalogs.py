"""The message catalogs are complete and current: every sentence has a Chinese translation, each translation keeps
its placeholders, the committed template matches the code and the committed ``.mo`` files match their ``.po``."""

from __future__ import annotations

import io
import logging
import re
import shlex
import string
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from bot import i18n

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = i18n.LOCALES / f"{i18n.DOMAIN}.pot"
CATALOGS = sorted(i18n.LOCALES.glob(f"*/LC_MESSAGES/{i18n.DOMAIN}.po"))
# How the template is extracted: the README's command ("Adding a language").
EXTRACT = ["extract", "--project=unmark", "--copyright-holder=unmark contributors", "--add-comments=TRANSLATORS:",
           "--add-location=file", "--sort-by-file", "--no-wrap"]
SOURCES = ["bot", "adapters"]


def read(path: Path) -> Catalog:
    with path.open("rb") as file:
        return read_po(file, abort_invalid=True)


def messages_of(catalog: Catalog) -> dict[tuple[str | None, str], Message]:
    return {(message.context, message.id[0] if isinstance(message.id, tuple) else message.id): message
            for message in catalog if message.id}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_there_is_a_simplified_chinese_catalog() -> None:
    assert [path.relative_to(i18n.LOCALES).parts[0] for path in CATALOGS] == ["zh_Hans"]


@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: p.parts[-3])
def test_every_message_has_a_translation(path: Path) -> None:
    template, catalog = messages_of(read(TEMPLATE)), read(path)
    translated = messages_of(catalog)
    missing = [msgid for (_, msgid), message in translated.items()
               if message.fuzzy or not all(message.string if isinstance(message.string, tuple) else (message.string,))]
    assert missing == [], f"{len(missing)} message(s) without a translation in {path.parts[-3]}"
    assert sorted(translated, key=str) == sorted(template, key=str), "run pybabel update (README)"
    assert catalog.obsolete == {}


@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: p.parts[-3])
def test_each_translation_fills_the_same_placeholders(path: Path) -> None:
    wrong = []
    for message in read(path):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        given = set().union(*(placeholders(msgid) for msgid in ids))  # what the code fills in
        for text in strings:
            # Never one the code does not fill (a KeyError in a chat), never a fact of the English dropped.
            if not placeholders(ids[0]) <= placeholders(text) <= given:
                wrong.append((ids[0], text))
    assert wrong == []


@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: p.parts[-3])
def test_catalogs_compile_without_warnings_and_the_committed_mo_is_current(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        catalog = read(path)
        problems = [(message.id, [str(error) for error in errors]) for message, errors in catalog.check()]
    assert problems == [] and caplog.records == []
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # what `pybabel compile` writes
    compiled.seek(0)
    with path.with_suffix(".mo").open("rb") as committed:
        assert translations(read_mo(committed)) == translations(read_mo(compiled)), "run pybabel compile (README)"


def translations(catalog: Catalog) -> dict[tuple[str | None, object], object]:
    def frozen(value: object) -> object:  # read_mo gives a plural's ids and forms as lists
        return tuple(value) if isinstance(value, list) else value

    return {(message.context, frozen(message.id)): frozen(message.string) for message in catalog if message.id}


def test_the_template_is_current_with_the_code(tmp_path: Path) -> None:
    fresh = tmp_path / "unmark.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", *EXTRACT, "-o", str(fresh), *SOURCES], cwd=ROOT,
                   check=True, capture_output=True)

    def described(catalog: Catalog) -> dict[tuple[str | None, str], tuple[object, ...]]:
        return {key: (message.id, message.auto_comments, sorted(message.flags), message.locations)
                for key, message in messages_of(catalog).items()}

    assert described(read(TEMPLATE)) == described(read(fresh)), "run pybabel extract (README)"


def test_the_readme_extracts_the_template_the_same_way() -> None:
    readme = (ROOT / "README.md").read_text().replace("\\\n", " ")
    [command] = re.findall(r"^pybabel (extract .*)$", readme, re.MULTILINE)
    assert shlex.split(command) == [*EXTRACT, "-o", str(TEMPLATE.relative_to(ROOT)), *SOURCES]


def test_english_needs_no_catalog_and_a_missing_translation_falls_back_to_it() -> None:
    assert i18n.translations("en-US") is i18n.ENGLISH
    chinese = i18n.translations("zh-CN")
    assert chinese.gettext("A sentence no catalog has.") == "A sentence no catalog has."
    assert chinese.ngettext("{count} new thing", "{count} new things", 2) == "{count} new things"
