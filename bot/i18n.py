"""Which language a person reads, and the gettext catalogs that say it; English, the code's own words, needs none.

The catalogs are ``locales/<locale>/LC_MESSAGES/unmark.mo`` beside this module, compiled with Babel from the
``.po`` files next to them (README, "Adding a language"). At run time only the standard library's ``gettext``
reads them.

The translations are passed explicitly (``messages.queued(2, tr=tr)``), never bound in a ``ContextVar``: a job is
answered from its record, maybe by another process after a restart, and a context set in one person's handler would
follow every task it starts (a group's shared status line, a job resumed later) into other people's answers.
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path

DOMAIN = "unmark"
LOCALES = Path(__file__).with_name("locales")
ENGLISH_LOCALE = "en"
ENGLISH = gettext.NullTranslations()

Translations = gettext.NullTranslations  # what ``bot.messages`` takes: gettext, ngettext, pgettext

# The script a language is written in when a tag names none: Chinese is Simplified unless the region writes
# Traditional. Telegram says "zh-hans" or "zh-hant", Slack "zh-CN" or "zh-TW", a terminal "zh_CN.UTF-8".
_DEFAULT_SCRIPTS = {"zh": "Hans"}
_REGION_SCRIPTS = {("zh", "TW"): "Hant", ("zh", "HK"): "Hant", ("zh", "MO"): "Hant"}


@functools.cache
def available() -> dict[str, str]:
    """The locales with a compiled catalog (and English), by their lower-case name: ``{"zh_hans": "zh_Hans"}``."""
    found = {ENGLISH_LOCALE: ENGLISH_LOCALE}
    for catalog in LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.mo"):
        locale = catalog.parent.parent.name
        found[locale.lower()] = locale
    return found


def negotiate(tag: str | None) -> str:
    """The catalog for a language as a platform or a terminal names it; English when there is none for it.

    ``zh``, ``zh-CN``, ``zh-hans`` and ``zh_CN.UTF-8`` → ``zh_Hans``; ``zh-TW`` has no catalog yet → ``en``;
    ``C``, ``POSIX``, ``""`` and ``None`` → ``en``.
    """
    return match(tag or "") or ENGLISH_LOCALE


def match(tag: str) -> str | None:
    """The catalog for ``tag``, or None when there is none (``negotiate`` then falls back to English)."""
    parts = _subtags(tag)
    if parts is None:
        return None
    language, script, region = parts
    default_script = _DEFAULT_SCRIPTS.get(language, "")
    script = script or _REGION_SCRIPTS.get((language, region), default_script)
    candidates = [(language, script, region), (language, script), (language, region)]
    if script == default_script:  # a bare "zh" catalog would be Simplified: no answer for Traditional
        candidates.append((language,))
    known = available()
    for candidate in candidates:
        if (locale := known.get("_".join(part for part in candidate if part).lower())) is not None:
            return locale
    return None


def translations(language: str | None, *, forced: str | None = None) -> Translations:
    """What a person whose platform says ``language`` reads; ``forced`` (UNMARK_LANGUAGE) overrides it for all."""
    return _load(negotiate(forced or language))


def platform_code(locale: str) -> str:
    """The two-letter code a platform keys per-language content by (Telegram's command menus): ``zh_Hans`` → ``zh``."""
    return locale.partition("_")[0]


def _subtags(tag: str) -> tuple[str, str, str] | None:
    """(language, Script, REGION) of a BCP 47 tag or a POSIX locale name, or None when it names no language."""
    tag = tag.strip().split(".", 1)[0].split("@", 1)[0].replace("-", "_")  # zh_CN.UTF-8, sr_RS@latin
    parts = [part for part in tag.split("_") if part]
    if not parts or parts[0].upper() in {"C", "POSIX"} or not parts[0].isalpha():
        return None
    script = region = ""
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            script = part.title()
        elif len(part) in (2, 3) and not region:
            region = part.upper()
    return parts[0].lower(), script, region


@functools.cache
def _load(locale: str) -> Translations:
    if locale == ENGLISH_LOCALE:
        return ENGLISH
    with (LOCALES / locale / "LC_MESSAGES" / f"{DOMAIN}.mo").open("rb") as catalog:
        return gettext.GNUTranslations(catalog)
