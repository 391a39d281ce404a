"""Every sentence a person reads, worded once so Telegram, Slack and the shell say the same thing."""

from __future__ import annotations

import time

from bot import errors
from bot.images import MAX_BYTES, MAX_SIDE, MIN_SIDE

HELP = (
    "Send me a photo or an image file (jpg, png, bmp; webp, gif and tiff are converted) and I'll send it "
    f"back without its watermark, at full quality. Images must be {MIN_SIDE}–{MAX_SIDE} px a side and at "
    f"most {MAX_BYTES // 2**20} MB. Privacy: your image is used only to clean it; the result is kept for "
    "one hour so a resend is instant, and I record only sizes and timings, never the pixels."
)
SHELL_HELP = (
    "Type the path of an image (or an http(s) link) and press Enter; the result is written to the output "
    "folder. Commands: /help, /usage, /quit."
)
SHELL_HINT = (
    "No chat platform configured, so this is the local shell. Set TELEGRAM_BOT_TOKEN or SLACK_BOT_TOKEN "
    "to run the bot in Telegram or Slack."
)
WORKING = "Removing the watermark…"
CACHED = "I cleaned this exact image within the hour; here it is again."
INTERNAL_ERROR = "Something went wrong on my side. Please try again in a minute."
NOT_A_COMMAND = "I don't know that command. Type /help to see what I can do."
RESTARTED = "I was restarted while cleaning your image and couldn't finish it. Please send it again."


def unfinished(names: list[str]) -> str:
    """The terminal, at its next start, names what the last session left unfinished."""
    listed = ", ".join(names)
    return (f"The last session stopped before it finished {listed}. Type the path again to clean it."
            if len(names) == 1 else
            f"The last session stopped before it finished {len(names)} images: {listed}. "
            "Type their paths again to clean them.")


def queued(position: int) -> str:
    """The chat's other images go first."""
    ahead = position - 1
    noun = "image" if ahead == 1 else "images"
    return f"Queued: {ahead} {noun} ahead of this one in this chat. I'll start on it right after."


def progress(percent: int) -> str:
    """The status line while the remover works."""
    return f"{WORKING} {max(0, min(100, percent))}%"


def done_caption(seconds: float, *, cached: bool = False) -> str:
    """The caption under a cleaned image."""
    if cached:
        return CACHED
    return f"Watermark removed in {seconds:.1f} s."


def usage_summary(*, today: int, limit: int, exempt: bool, last_30_days: int, all_time: int,
                  success_rate: float | None, median_seconds: float | None, cached_today: int = 0) -> str:
    """This chat's usage, as /usage shows it.

    ``today`` is what the limit counts; ``cached_today`` came free from the cache and is said apart, so that
    "cleaned today" and "left today" always add up to the limit.
    """
    if exempt or limit == 0:
        remaining = "no daily limit applies here"
    else:
        remaining = f"{max(0, limit - today)} of {limit} left today (resets at 00:00 UTC)"
    cleaned = f"Images cleaned today: {today}"
    if cached_today:
        cleaned += f" (and {cached_today} sent again free from the cache)"
    parts = [f"{cleaned}; {remaining}.", f"Last 30 days: {last_30_days}; all time: {all_time}."]
    if success_rate is not None:
        parts.append(f"Success rate {success_rate:.0%} of the images I tried to clean")
        if median_seconds is not None:
            parts[-1] += f", median time {median_seconds:.1f} s"
        parts[-1] += "."
    return " ".join(parts)


def _megabytes(size: int) -> str:
    # Limits are set in round decimal MB by some platforms (Telegram's 20 000 000 bytes) and in MiB by
    # others (PicWish's 50 MB): show each as the round number its owner advertises.
    return f"{size / 1e6:.0f} MB" if size % 1_000_000 == 0 else f"{size / 2**20:.0f} MB"


def describe(error: errors.UnmarkError, *, operator: bool = False) -> str:
    """The one plain sentence a person reads for a failure: what happened and what to do.

    ``operator``: the person is the one who runs the bot (at the terminal), so what only an operator can fix is
    told to them plainly instead of "the bot's operator has been told".
    """
    if operator and (told := _to_operator(error)) is not None:
        return told
    match error:
        case errors.NotAnImage(detected="pdf"):
            return "That's a PDF, not an image. Send me a jpg, png or bmp."
        case errors.NotAnImage(detected="html"):
            return "That link leads to a web page, not an image. Send a direct link to the image, or the image itself."
        case errors.NotAnImage(detected="heic"):
            return "I can't read HEIC images here. Send it as a jpg or png instead."
        case errors.NotAnImage():
            return "That file isn't a valid image. Send me a jpg, png or bmp."
        case errors.ImageTooSmall(width=width, height=height):
            return f"That image is only {width}×{height} px; I need at least {MIN_SIDE} px on each side."
        case errors.ImageTooLarge(width=int(width), height=int(height)):
            return (f"That image is {width}×{height} px; the most I can take is {MAX_SIDE} px a side. "
                    "Please scale it down and send it again.")
        case errors.ImageTooLarge():
            return f"That image has too many pixels; the most I can take is {MAX_SIDE} px a side."
        case errors.FileTooLarge(size=int(size), limit=limit):
            return (f"That file is {_megabytes(size)}; the most I can take is {_megabytes(limit)}. "
                    "Please send a smaller or compressed copy.")
        case errors.FileTooLarge(limit=limit):
            return f"That file is too big; the most I can take is {_megabytes(limit)}."
        case errors.UnreachableLink():
            return "I couldn't download an image from that link. Check that it is public and try again."
        case errors.FileUnavailable():
            return ("I couldn't download that file from the chat. Please send it again; if this keeps happening, "
                    "the bot's operator should check its permission to read files.")
        case errors.UnreadableFile(path=path):
            return f"I can't read {path}. Check the path and try again."
        case errors.QuotaExceeded(limit=limit, resets_at=resets_at):
            hours = max(1, round((resets_at - time.time()) / 3600))
            return (f"This chat has used its {limit} images for today. The limit resets at 00:00 UTC, "
                    f"in about {hours} h.")
        case errors.Interrupted():
            return RESTARTED
        case errors.RemoverBusy():
            return "The watermark service is busy right now. Please send the image again in a minute."
        case errors.RemoverUnavailable():
            return "The watermark service is not answering right now. Please try again in a few minutes."
        case errors.InvalidApiKey():
            return "The watermark service is misconfigured. The bot's operator has been told."
        case errors.RemovalTimedOut():
            return "Removing the watermark took too long. Please try again, or send a smaller image."
        case errors.ResultExpired():
            return "The cleaned image expired before I could fetch it. Please send the image again."
        case errors.EngineBroken():
            return "The local watermark engine is broken on this server. The bot's operator has been told."
        case errors.RemovalFailed():
            return "I couldn't remove the watermark from this image. Try another copy of it, or another image."
    return INTERNAL_ERROR


def _to_operator(error: errors.UnmarkError) -> str | None:
    match error:
        case errors.InvalidApiKey():
            return ("PicWish rejected the API key (HTTP 401). Check PICWISH_API_KEY, or unset it to use the "
                    "built-in engine.")
        case errors.EngineBroken(detail=detail):
            return f"The local watermark engine cannot run: {detail}. Reinstall unmark, or set PICWISH_API_KEY."
    return None


ADMINS_ONLY = "Global stats are for the bot's admins only. /usage shows this chat's usage."


def global_summary(today: int, last_30_days: int, all_time: int, failed: int, cached: int, chats: int,
                   median_seconds: float | None) -> str:
    """Everyone's usage, for admins."""
    median = f"; median time {median_seconds:.1f} s" if median_seconds is not None else ""
    return (f"All chats: {today} images today, {last_30_days} in 30 days ({chats} active chats), {all_time} all "
            f"time; {failed} failed, {cached} answered from the cache{median}.")


# --- Slack ------------------------------------------------------------------------------------------------------

SLACK_HELP = (
    "In Slack: send me images in a direct message; in a channel, mention @unmark in the message that shares "
    "them; on any message with images, choose “Remove watermark” from its ⋮ menu; or type /unmark and a link "
    "to an image. /unmark usage shows this conversation's usage."
)
SLACK_COMMAND_HINT = "Type /unmark and a link to an image (/unmark https://…), or /unmark usage, or /unmark help."
SLACK_NO_IMAGE = (
    "I don't see an image in that message. Mention me in the message that shares the image, or choose "
    "“Remove watermark” from the ⋮ menu of a message that has one."
)
SLACK_HOME_TITLE = "unmark: watermark removal"
SLACK_DIRECT_MESSAGES = "direct messages"


def slack_home(*, today: int, last_30_days: int, top_channels: list[tuple[str, int]], limit: int,
               exempt: bool) -> list[str]:
    """The App Home tab, one paragraph each: this workspace's usage, its busiest channels, the limits, how to use.

    ``top_channels`` pairs a channel as Slack should show it (``<#C123>``) with its images in 30 days.
    """
    noun = "image" if today == 1 else "images"
    paragraphs = [f"This workspace: {today} {noun} cleaned today, {last_30_days} in the last 30 days."]
    if top_channels:
        busiest = ", ".join(f"{channel} ({count})" for channel, count in top_channels)
        paragraphs.append(f"Busiest in the last 30 days: {busiest}.")
    if limit == 0:
        quota = "No daily limit applies here."
    else:
        quota = f"Each channel and direct message may clean {limit} images a day (resets at 00:00 UTC)."
        if exempt:
            quota += " You are an admin, so no limit applies to your images."
    paragraphs.append(f"{quota} Images must be {MIN_SIDE}–{MAX_SIDE} px a side and at most "
                      f"{MAX_BYTES // 2**20} MB.")
    paragraphs.append(SLACK_HELP)
    return paragraphs


# --- Telegram ---------------------------------------------------------------------------------------------------

TELEGRAM_SEND_AN_IMAGE = (
    "Send me a photo or an image file (jpg, png or bmp), or a link to one, and I'll remove its watermark. "
    "/help says more."
)
TELEGRAM_CLEAN_HOW = "Reply /clean to a photo or an image file, or type /clean and a link to an image."
TELEGRAM_REENCODED = "Re-encoded as a high-quality JPEG to fit Telegram's 50 MB upload limit."
TELEGRAM_COMMANDS = (
    ("clean", "Clean the photo or image file you reply to"),
    ("usage", "This chat's usage and what is left today"),
    ("help", "What I do, my limits and privacy"),
)
TELEGRAM_ADMIN_COMMANDS = (("stats", "Everyone's usage (admins only)"),)


def telegram_help(bot_username: str) -> str:
    """/start and /help in Telegram: what I do, the limits, privacy and how to ask in a group, in one paragraph."""
    return (f"{HELP} On Telegram a file can be at most 20 MB. In a group I answer only when asked: reply /clean "
            f"to a photo or an image file, or put /clean or @{bot_username} in its caption. {TELEGRAM_ALBUMS}")


# Telegram's group privacy mode delivers a bot only the captioned item of an album (README, "Groups and privacy").
TELEGRAM_ALBUMS = ("In an album, Telegram shows me only the item with the caption: reply /clean to any other item "
                   "to clean it too.")


def batch_status(position: int, total: int, text: str) -> str:
    """The one status line of a chat working through several images at once (an album, a burst)."""
    return text if total <= 1 else f"Image {position} of {total}: {text}"
