"""Every sentence a person reads, worded once so Telegram, Slack and the shell say the same thing, in their language.

Each sentence is an English gettext message id (``bot/locales``, README "Adding a language"):

- a constant is a sentence with nothing to fill in, marked with ``N_`` for extraction and said with
  ``tr.gettext(messages.WORKING)``;
- a function says a sentence with numbers or names in it; it takes the person's translations as ``tr``
  (English by default) and fills ``{placeholders}`` after translating, so a translation may reorder them. Where a
  number is said, ``ngettext`` picks the plural form.

A sentence is always translated whole: variants ("…; no daily limit applies here.") are separate message ids,
never English fragments glued together.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from bot import errors
from bot.i18n import ENGLISH, Translations
from bot.images import MAX_BYTES, MAX_SIDE, MIN_SIDE


def N_(message: str) -> str:  # gettext's own name for "mark for extraction, translate later"
    """Mark a constant sentence for extraction; it is translated where it is said."""
    return message


SHELL_HELP = N_(
    "Type the path of an image (or an http(s) link) and press Enter; the result is written to the output "
    "folder. Commands: /help, /usage, /quit."
)
SHELL_HINT = N_(
    "No chat platform configured, so this is the local shell. Set TELEGRAM_BOT_TOKEN or SLACK_BOT_TOKEN "
    "to run the bot in Telegram or Slack."
)
WORKING = N_("Removing the watermark…")
NO_WATERMARK = N_("No watermark found; your image is unchanged.")
CACHED = N_("I cleaned this exact image within the hour; here it is again.")
INTERNAL_ERROR = N_("Something went wrong on my side. Please try again in a minute.")
NOT_A_COMMAND = N_("I don't know that command. Type /help to see what I can do.")
RESTARTED = N_("I was restarted while cleaning your image and couldn't finish it. Please send it again.")
ADMINS_ONLY = N_("Global stats are for the bot's admins only. /usage shows this chat's usage.")


def about(*, tr: Translations = ENGLISH) -> str:
    """What I do, my limits and privacy: the start of every platform's help."""
    return tr.gettext(
        "Send me a photo or an image file (jpg, png, bmp; webp, gif and tiff are converted) and I'll send it "
        "back without its watermark, at full quality. Images must be {min_side}–{max_side} px a side and at "
        "most {max_mb} MB. Privacy: your image is used only to clean it; the result is kept for one hour so a "
        "resend is instant, and I record only sizes and timings, never the pixels."
    ).format(min_side=MIN_SIDE, max_side=MAX_SIDE, max_mb=MAX_BYTES // 2**20)


def unfinished(names: list[str], *, tr: Translations = ENGLISH) -> str:
    """The terminal, at its next start, names what the last session left unfinished."""
    return tr.ngettext(
        "The last session stopped before it finished {names}. Type the path again to clean it.",
        "The last session stopped before it finished {count} images: {names}. Type their paths again to clean "
        "them.",
        len(names),
    ).format(count=len(names), names=listing(names, tr=tr))


def queued(position: int, *, tr: Translations = ENGLISH) -> str:
    """The chat's other images go first."""
    ahead = position - 1
    return tr.ngettext(
        "Queued: {count} image ahead of this one in this chat. I'll start on it right after.",
        "Queued: {count} images ahead of this one in this chat. I'll start on it right after.",
        ahead,
    ).format(count=ahead)


def progress(percent: int, *, tr: Translations = ENGLISH) -> str:
    """The status line while the remover works."""
    return tr.gettext("Removing the watermark… {percent}%").format(percent=max(0, min(100, percent)))


def done_caption(seconds: float, *, cached: bool = False, tr: Translations = ENGLISH) -> str:
    """The caption under a cleaned image."""
    if cached:
        return tr.gettext(CACHED)
    return tr.gettext("Watermark removed in {seconds} s.").format(seconds=f"{seconds:.1f}")


def saved(caption: str, path: Path | str, *, tr: Translations = ENGLISH) -> str:
    """The terminal's line for a result: its caption, then where the file went."""
    # TRANSLATORS: follows the caption on the terminal; {path} is where the cleaned file was written.
    return sentences([caption, tr.gettext("Saved {path}").format(path=path)])


def usage_summary(*, today: int, limit: int, exempt: bool, last_30_days: int, all_time: int,
                  success_rate: float | None, median_seconds: float | None, cached_today: int = 0,
                  tr: Translations = ENGLISH) -> str:
    """This chat's usage, as /usage shows it.

    ``today`` is what the limit counts; ``cached_today`` came free from the cache and is said apart, so that
    "cleaned today" and "left today" always add up to the limit.
    """
    unlimited = exempt or limit == 0
    if cached_today and unlimited:
        first = tr.gettext("Images cleaned today: {today} (and {cached} sent again free from the cache); "
                           "no daily limit applies here.")
    elif cached_today:
        first = tr.gettext("Images cleaned today: {today} (and {cached} sent again free from the cache); "
                           "{left} of {limit} left today (resets at 00:00 UTC).")
    elif unlimited:
        first = tr.gettext("Images cleaned today: {today}; no daily limit applies here.")
    else:
        first = tr.gettext("Images cleaned today: {today}; {left} of {limit} left today (resets at 00:00 UTC).")
    parts = [
        first.format(today=today, cached=cached_today, left=max(0, limit - today), limit=limit),
        tr.gettext("Last 30 days: {last_30_days}; all time: {all_time}.").format(
            last_30_days=last_30_days, all_time=all_time),
    ]
    if success_rate is not None:
        rate = f"{success_rate:.0%}"
        if median_seconds is None:
            parts.append(tr.gettext("Success rate {rate} of the images I tried to clean.").format(rate=rate))
        else:
            parts.append(tr.gettext("Success rate {rate} of the images I tried to clean, median time {seconds} s.")
                         .format(rate=rate, seconds=f"{median_seconds:.1f}"))
    return sentences(parts)


def _megabytes(size: int) -> str:
    # Limits are set in round decimal MB by some platforms (Telegram's 20 000 000 bytes) and in MiB by
    # others (PicWish's 50 MB): show each as the round number its owner advertises.
    return f"{size / 1e6:.0f} MB" if size % 1_000_000 == 0 else f"{size / 2**20:.0f} MB"


def describe(error: errors.UnmarkError, *, operator: bool = False, tr: Translations = ENGLISH) -> str:
    """The one plain sentence a person reads for a failure: what happened and what to do.

    ``operator``: the person is the one who runs the bot (at the terminal), so what only an operator can fix is
    told to them plainly instead of "the bot's operator has been told".
    """
    if operator and (told := _to_operator(error, tr)) is not None:
        return told
    _ = tr.gettext
    match error:
        case errors.NotAnImage(detected="pdf"):
            return _("That's a PDF, not an image. Send me a jpg, png or bmp.")
        case errors.NotAnImage(detected="html"):
            return _("That link leads to a web page, not an image. Send a direct link to the image, or the image "
                     "itself.")
        case errors.NotAnImage(detected="heic"):
            return _("I can't read HEIC images here. Send it as a jpg or png instead.")
        case errors.NotAnImage():
            return _("That file isn't a valid image. Send me a jpg, png or bmp.")
        case errors.ImageTooSmall(width=width, height=height):
            return _("That image is only {width}×{height} px; I need at least {min_side} px on each side.").format(
                width=width, height=height, min_side=MIN_SIDE)
        case errors.ImageTooLarge(width=int(width), height=int(height)):
            return _("That image is {width}×{height} px; the most I can take is {max_side} px a side. Please scale "
                     "it down and send it again.").format(width=width, height=height, max_side=MAX_SIDE)
        case errors.ImageTooLarge():
            return _("That image has too many pixels; the most I can take is {max_side} px a side.").format(
                max_side=MAX_SIDE)
        case errors.FileTooLarge(size=int(size), limit=limit):
            return _("That file is {size}; the most I can take is {limit}. Please send a smaller or compressed "
                     "copy.").format(size=_megabytes(size), limit=_megabytes(limit))
        case errors.FileTooLarge(limit=limit):
            return _("That file is too big; the most I can take is {limit}.").format(limit=_megabytes(limit))
        case errors.UnreachableLink():
            return _("I couldn't download an image from that link. Check that it is public and try again.")
        case errors.FileUnavailable():
            return _("I couldn't download that file from the chat. Please send it again; if this keeps happening, "
                     "the bot's operator should check its permission to read files.")
        case errors.UnreadableFile(path=path):
            return _("I can't read {path}. Check the path and try again.").format(path=path)
        case errors.QuotaExceeded(limit=limit, resets_at=resets_at):
            hours = max(1, round((resets_at - time.time()) / 3600))
            return tr.ngettext(
                "This chat has used its {limit} image for today. The limit resets at 00:00 UTC, in about {hours} h.",
                "This chat has used its {limit} images for today. The limit resets at 00:00 UTC, in about {hours} "
                "h.",
                limit,
            ).format(limit=limit, hours=hours)
        case errors.Interrupted():
            return _(RESTARTED)
        case errors.RemoverBusy():
            return _("The watermark service is busy right now. Please send the image again in a minute.")
        case errors.RemoverUnavailable():
            return _("The watermark service is not answering right now. Please try again in a few minutes.")
        case errors.InvalidApiKey():
            return _("The watermark service is misconfigured. The bot's operator has been told.")
        case errors.RemovalTimedOut():
            return _("Removing the watermark took too long. Please try again, or send a smaller image.")
        case errors.ResultExpired():
            return _("The cleaned image expired before I could fetch it. Please send the image again.")
        case errors.EngineBroken():
            return _("The local watermark engine is broken on this server. The bot's operator has been told.")
        case errors.RemovalFailed():
            return _("I couldn't remove the watermark from this image. Try another copy of it, or another image.")
    return _(INTERNAL_ERROR)


def _to_operator(error: errors.UnmarkError, tr: Translations) -> str | None:
    match error:
        case errors.InvalidApiKey():
            return tr.gettext("PicWish rejected the API key (HTTP 401). Check PICWISH_API_KEY, or unset it to use "
                              "the built-in engine.")
        case errors.EngineBroken(detail=detail):  # the detail is the engine's own (English) diagnosis
            return tr.gettext("The local watermark engine cannot run: {detail}. Reinstall unmark, or set "
                              "PICWISH_API_KEY.").format(detail=detail)
    return None


def global_summary(today: int, last_30_days: int, all_time: int, failed: int, cached: int, chats: int,
                   median_seconds: float | None, *, tr: Translations = ENGLISH) -> str:
    """Everyone's usage, for admins."""
    numbers = {"today": today, "last_30_days": last_30_days, "chats": chats, "all_time": all_time,
               "failed": failed, "cached": cached}
    if median_seconds is None:
        return tr.gettext("All chats: {today} images today, {last_30_days} in 30 days ({chats} active chats), "
                          "{all_time} all time; {failed} failed, {cached} answered from the cache.").format(**numbers)
    return tr.gettext("All chats: {today} images today, {last_30_days} in 30 days ({chats} active chats), "
                      "{all_time} all time; {failed} failed, {cached} answered from the cache; median time "
                      "{seconds} s.").format(seconds=f"{median_seconds:.1f}", **numbers)


def listing(items: Iterable[str], *, tr: Translations = ENGLISH) -> str:
    """Names in a row, with the separator the language uses (Chinese lists with "、")."""
    # TRANSLATORS: put between file or channel names in a list.
    return tr.pgettext("separator between the items of a list", ", ").join(items)


def labelled(label: str, text: str, *, tr: Translations = ENGLISH) -> str:
    """A sentence about one of several files, after its name."""
    # TRANSLATORS: {label} is a file name, {text} one of the sentences here about that file.
    return tr.gettext("{label}: {text}").format(label=label, text=text)


def sentences(parts: Iterable[str]) -> str:
    """Whole sentences in a row: a space after each, except after the full-width stops of Chinese (。！？),
    which are never followed by one."""
    text = ""
    for part in parts:
        if text and not text.endswith(("。", "！", "？", "）", "：")):
            text += " "
        text += part
    return text


# --- Slack ------------------------------------------------------------------------------------------------------

# TRANSLATORS: keep “Remove watermark” (the shortcut's name in slack-manifest.yml, which Slack shows as it is) and
# the words after /unmark (usage, help): the bot understands only those.
SLACK_HELP = N_(
    "In Slack: send me images in a direct message; in a channel, mention @unmark in the message that shares "
    "them; on any message with images, choose “Remove watermark” from its ⋮ menu; or type /unmark and a link "
    "to an image. /unmark usage shows this conversation's usage."
)
# TRANSLATORS: keep the words after /unmark (usage, help): the bot understands only those.
SLACK_COMMAND_HINT = N_("Type /unmark and a link to an image (/unmark https://…), or /unmark usage, or /unmark help.")
# TRANSLATORS: keep “Remove watermark”, the shortcut's name as Slack shows it.
SLACK_NO_IMAGE = N_(
    "I don't see an image in that message. Mention me in the message that shares the image, or choose "
    "“Remove watermark” from the ⋮ menu of a message that has one."
)
SLACK_HOME_TITLE = N_("unmark: watermark removal")
SLACK_DIRECT_MESSAGES = N_("direct messages")


def slack_home(*, today: int, last_30_days: int, top_channels: list[tuple[str, int]], limit: int,
               exempt: bool, tr: Translations = ENGLISH) -> list[str]:
    """The App Home tab, one paragraph each: this workspace's usage, its busiest channels, the limits, how to use.

    ``top_channels`` pairs a channel as Slack should show it (``<#C123>``) with its images in 30 days.
    """
    paragraphs = [tr.ngettext(
        "This workspace: {today} image cleaned today, {last_30_days} in the last 30 days.",
        "This workspace: {today} images cleaned today, {last_30_days} in the last 30 days.",
        today,
    ).format(today=today, last_30_days=last_30_days)]
    if top_channels:
        # TRANSLATORS: a Slack channel and how many images were cleaned there.
        busiest = listing((tr.gettext("{channel} ({count})").format(channel=channel, count=count)
                           for channel, count in top_channels), tr=tr)
        paragraphs.append(tr.gettext("Busiest in the last 30 days: {channels}.").format(channels=busiest))
    if limit == 0:
        quota = [tr.gettext("No daily limit applies here.")]
    else:
        quota = [tr.ngettext(
            "Each channel and direct message may clean {limit} image a day (resets at 00:00 UTC).",
            "Each channel and direct message may clean {limit} images a day (resets at 00:00 UTC).",
            limit,
        ).format(limit=limit)]
        if exempt:
            quota.append(tr.gettext("You are an admin, so no limit applies to your images."))
    quota.append(tr.gettext("Images must be {min_side}–{max_side} px a side and at most {max_mb} MB.").format(
        min_side=MIN_SIDE, max_side=MAX_SIDE, max_mb=MAX_BYTES // 2**20))
    paragraphs.append(sentences(quota))
    paragraphs.append(tr.gettext(SLACK_HELP))
    return paragraphs


# --- Telegram ---------------------------------------------------------------------------------------------------

TELEGRAM_SEND_AN_IMAGE = N_(
    "Send me a photo or an image file (jpg, png or bmp), or a link to one, and I'll remove its watermark. "
    "/help says more."
)
TELEGRAM_CLEAN_HOW = N_("Reply /clean to a photo or an image file, or type /clean and a link to an image.")
TELEGRAM_REENCODED = N_("Re-encoded as a high-quality JPEG to fit Telegram's 50 MB upload limit.")
# Command menus, registered once per language (adapters.telegram.modes); the names themselves are never translated.
TELEGRAM_COMMANDS = (
    ("clean", N_("Clean the photo or image file you reply to")),
    ("usage", N_("This chat's usage and what is left today")),
    ("help", N_("What I do, my limits and privacy")),
)
TELEGRAM_ADMIN_COMMANDS = (("stats", N_("Everyone's usage (admins only)")),)
# Telegram's group privacy mode delivers a bot only the captioned item of an album (README, "Groups and privacy").
TELEGRAM_ALBUMS = N_("In an album, Telegram shows me only the item with the caption: reply /clean to any other item "
                     "to clean it too.")


def telegram_help(bot_username: str, *, tr: Translations = ENGLISH) -> str:
    """/start and /help in Telegram: what I do, the limits, privacy and how to ask in a group, in one paragraph."""
    in_telegram = tr.gettext(
        "On Telegram a file can be at most 20 MB. In a group I answer only when asked: reply /clean to a photo or "
        "an image file, or put /clean or @{username} in its caption."
    ).format(username=bot_username)
    return sentences([about(tr=tr), in_telegram, tr.gettext(TELEGRAM_ALBUMS)])


def telegram_commands(*, admin: bool = False, tr: Translations = ENGLISH) -> list[tuple[str, str]]:
    """The command menu, (command, description) each; an admin's has /stats too."""
    commands = TELEGRAM_COMMANDS + (TELEGRAM_ADMIN_COMMANDS if admin else ())
    return [(name, tr.gettext(description)) for name, description in commands]


def batch_status(position: int, total: int, text: str, *, tr: Translations = ENGLISH) -> str:
    """The one status line of a chat working through several images at once (an album, a burst)."""
    # TRANSLATORS: {text} is the status of the image being worked on, e.g. "Removing the watermark… 40%".
    return text if total <= 1 else tr.gettext("Image {position} of {total}: {text}").format(
        position=position, total=total, text=text)
