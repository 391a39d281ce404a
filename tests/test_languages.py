"""Replies in the person's language (issue 29): a Chinese sender reads Chinese on every path, through the Telegram
and Slack fakes, the shell and the core; a language without a catalog reads English; UNMARK_LANGUAGE overrides all."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters import shell
from bot import errors, i18n, messages
from bot.config import Settings, SettingsError, load_settings, terminal_language
from bot.core import open_service
from bot.images import Image
from bot.jobs import ChatRef
from bot.picwish import PicWishClient
from bot.usage import UsageStore
from tests.conftest import jpeg
from tests.fakes.platform import MemoryPlatform
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeBotAPI
from tests.test_cli import unmark
from tests.test_layout import concrete_errors, example
from tests.test_slack import DM, Slack, running
from tests.test_telegram import api_url, polling, tg, tg_settings  # noqa: F401  (fixtures)

ZH = i18n.translations("zh-CN")
EN = i18n.ENGLISH
CJK = re.compile(r"[\u4e00-\u9fff]")
# Every failure a person can be told of, in the order a ScriptedRemover raises them.
FAILURES = [example(cls) for cls in concrete_errors()]


class ScriptedRemover:
    """Fails each image with the next of ``failures`` (what fails is not under test here: what is said is)."""

    name = "scripted"

    def __init__(self, failures: list[errors.UnmarkError]) -> None:
        self.failures = list(failures)

    async def remove(self, image: Image, progress=None, *, on_task=None, source_url=None) -> Image:  # type: ignore[no-untyped-def]
        if progress is not None:
            await progress(50)
        raise self.failures.pop(0)


def chinese(text: str | None) -> bool:
    """Written in Chinese: it has Chinese characters and no run of English words (names, commands and units aside)."""
    english = re.findall(r"[A-Za-z]{3,}(?: [A-Za-z]{3,}){2,}", text or "")
    return bool(text) and bool(CJK.search(text or "")) and english == []


# --- choosing the language -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["zh", "zh-CN", "zh-Hans", "zh-hans", "zh_CN.UTF-8", "zh-SG", "zh-Hans-CN", "ZH_cn"])
def test_every_way_of_saying_simplified_chinese_finds_its_catalog(tag: str) -> None:
    assert i18n.negotiate(tag) == "zh_Hans"


@pytest.mark.parametrize("tag", ["en", "en-US", "fr-FR", "de", "zh-TW", "zh-hant", "zh_HK.UTF-8", "C.UTF-8", "POSIX",
                                 "", None, "12", "-"])
def test_a_language_without_a_catalog_is_english(tag: str | None) -> None:
    assert i18n.negotiate(tag) == "en"
    assert i18n.translations(tag).gettext(messages.WORKING) == messages.WORKING


def test_unmark_language_forces_one_language_and_must_have_a_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    assert i18n.translations("en-US", forced="zh").gettext(messages.WORKING) == "正在去除水印…"
    monkeypatch.setenv("UNMARK_LANGUAGE", "zh-CN")
    assert load_settings().language == "zh-CN"
    monkeypatch.setenv("UNMARK_LANGUAGE", "fr")
    with pytest.raises(SettingsError, match=r"^UNMARK_LANGUAGE: .*no translation for 'fr'; choose from en, zh_Hans"):
        load_settings()
    monkeypatch.setenv("UNMARK_LANGUAGE", " ")
    assert load_settings().language is None


def test_the_terminal_language_is_lc_all_then_lc_messages_then_lang() -> None:
    assert terminal_language({"LC_ALL": "zh_CN.UTF-8", "LC_MESSAGES": "en_US", "LANG": "en_US"}) == "zh_CN.UTF-8"
    assert terminal_language({"LC_ALL": "", "LC_MESSAGES": "zh_CN", "LANG": "en_US"}) == "zh_CN"
    assert terminal_language({"LANG": "zh_CN.UTF-8"}) == "zh_CN.UTF-8"
    assert terminal_language({}) == ""


@pytest.mark.parametrize("error", FAILURES, ids=lambda e: type(e).__name__)
def test_every_failure_has_its_own_chinese_sentence(error: errors.UnmarkError) -> None:
    for operator in (False, True):
        said = messages.describe(error, operator=operator, tr=ZH)
        assert chinese(said) and said != messages.describe(error, operator=operator)
    assert messages.describe(error, tr=ZH) != ZH.gettext(messages.INTERNAL_ERROR)


def test_numbers_pick_the_plural_form_and_chinese_lists_take_its_own_separator() -> None:
    assert messages.queued(2) == "Queued: 1 image ahead of this one in this chat. I'll start on it right after."
    assert messages.queued(4, tr=ZH) == "已排队：本聊天中还有 3 张图片排在这张之前。轮到它时我会马上开始。"
    assert messages.unfinished(["a.jpg", "b.jpg"], tr=ZH) == (
        "上次会话结束时，还有 2 张图片没有处理完：a.jpg、b.jpg。请重新输入路径来处理。")
    assert messages.saved("水印已去除，用时 1.2 秒。", "out/a.jpg", tr=ZH) == "水印已去除，用时 1.2 秒。已保存到 out/a.jpg"


# --- the core: queue, progress, results, restarts -------------------------------------------------------------


async def test_a_chinese_job_is_queued_worked_on_and_answered_in_chinese(settings: Settings,
                                                                        client: PicWishClient) -> None:
    platform = MemoryPlatform("telegram")
    chat = ChatRef("telegram", "100", "1")
    first, second = (dataclasses.replace(platform.job(jpeg(seed=seed), chat), language="zh-hans") for seed in (1, 2))
    async with open_service(settings, remover=client) as service:
        await service.attach(platform)
        await asyncio.gather(service.handle(first), service.handle(second))

    ahead, later = platform.replies_of(first), platform.replies_of(second)
    assert later.progress_lines[0] == messages.queued(2, tr=ZH)
    assert ahead.progress_lines[0] == "正在去除水印…" and ahead.progress_lines[-1] == "正在去除水印… 100%"
    assert all(chinese(line) for line in ahead.progress_lines + later.progress_lines)
    assert [image.caption[:8] for image in ahead.images + later.images] == ["水印已去除，用时"] * 2


async def test_the_language_is_kept_with_the_job_so_a_restart_answers_in_it(settings: Settings) -> None:
    platform = MemoryPlatform("telegram")
    cut_off = dataclasses.replace(platform.job(jpeg(), ChatRef("telegram", "100", "1")), language="zh-CN")
    async with UsageStore.open(settings.database) as store:
        await store.start(cut_off, backend="scripted")
        [stored] = await store.unfinished("telegram")
    assert stored.job == cut_off
    with sqlite3.connect(settings.database) as db:  # older than an hour: it cannot be finished any more
        db.execute("UPDATE jobs SET created_at = created_at - 3601")

    async with open_service(settings, remover=ScriptedRemover([])) as service:
        [resumed] = await service.attach(platform)
        await resumed
    assert platform.replies_of(cut_off).said == ["处理你的图片时我被重启了，没能完成。请重新发送。"]


# --- Telegram -----------------------------------------------------------------------------------------------


async def test_a_chinese_telegram_user_reads_help_usage_hints_and_results_in_chinese(
        tg: FakeBotAPI, tg_settings: Settings, client: PicWishClient) -> None:  # noqa: F811
    li = tg.person("Li", language_code="zh-hans")
    chat = tg.private_chat(li)
    async with open_service(tg_settings, remover=client) as service, polling(service, tg_settings, tg):
        asked = {tg.send_text(chat, text, sender=li)["message_id"]: text
                 for text in ("/help", "/usage", "/stats", "/frobnicate", "hi there")}
        tg.send_photo(chat, jpeg(320, 240), sender=li)
        pdf = tg.send_document(chat, b"%PDF-1.4 not an image", file_name="scan.pdf", mime_type="application/pdf",
                               sender=li)
        asked[pdf["message_id"]] = "scan.pdf"
        # Every question answered, the photo's result sent, and the status line gone.
        await tg.wait_for(lambda: set(asked) <= {m.reply_to for m in tg.sent(chat) if m.text}
                          and tg.documents(chat) and len(tg.sent(chat)) == 7)

    answers = {asked[m.reply_to]: m.text for m in tg.sent(chat) if m.text}  # type: ignore[index]
    assert answers["/help"] == messages.telegram_help(tg.bot_user["username"], tr=ZH)
    assert answers["/usage"] == messages.usage_summary(today=0, limit=50, exempt=False, last_30_days=0, all_time=0,
                                                       success_rate=None, median_seconds=None, tr=ZH)
    assert answers["/stats"] == ZH.gettext(messages.ADMINS_ONLY)
    assert answers["/frobnicate"] == ZH.gettext(messages.NOT_A_COMMAND)
    assert answers["hi there"] == ZH.gettext(messages.TELEGRAM_SEND_AN_IMAGE)
    assert answers["scan.pdf"] == messages.describe(errors.NotAnImage("pdf"), tr=ZH)
    [result] = tg.documents(chat)
    assert result.caption is not None and result.caption.startswith("水印已去除，用时")
    statuses = [m for m in tg.sent(chat, deleted=True) if m.deleted]
    assert statuses and all(chinese(text) for m in statuses for text in [m.text, *(text for _, text in m.edits)])


async def test_every_failure_is_told_in_chinese_through_telegram(tg: FakeBotAPI, tg_settings: Settings) -> None:  # noqa: F811
    li = tg.person("Li", language_code="zh-CN")
    chat = tg.private_chat(li)
    async with (open_service(tg_settings, remover=ScriptedRemover(FAILURES)) as service,
                polling(service, tg_settings, tg)):
        photos = [tg.send_photo(chat, jpeg(64, 48, seed=seed), sender=li) for seed in range(len(FAILURES))]
        expected = [messages.describe(e, tr=ZH) for e in FAILURES]
        await tg.wait_for(lambda: sorted(m.text or "" for m in tg.sent(chat)) == sorted(expected), timeout=30)

    told = {m.reply_to: m.text for m in tg.sent(chat)}
    assert [told[photo["message_id"]] for photo in photos] == expected


async def test_in_a_group_each_person_is_answered_in_their_own_language(
        tg: FakeBotAPI, tg_settings: Settings, client: PicWishClient) -> None:  # noqa: F811
    li, sam = tg.person("Li", language_code="zh-hans"), tg.person("Sam", language_code="fr")
    group = tg.group_chat()
    async with open_service(tg_settings, remover=client) as service, polling(service, tg_settings, tg):
        mine = tg.send_photo(group, jpeg(300, 200, seed=1), caption="/clean", sender=li)
        theirs = tg.send_photo(group, jpeg(300, 200, seed=2), caption="/clean", sender=sam)
        stranger_photo = tg.send_photo(group, jpeg(300, 200, seed=3), sender=sam)
        asked = tg.send_text(group, "/clean", sender=li, reply_to=stranger_photo)  # Li asks about Sam's photo
        await tg.wait_for(lambda: len(tg.documents(group)) == 3 and len(tg.sent(group)) == 3)

    captions = {m.reply_to: m.caption or "" for m in tg.documents(group)}
    assert captions[mine["message_id"]].startswith("水印已去除")
    assert captions[theirs["message_id"]].startswith("Watermark removed in ")  # French has no catalog: English
    assert captions[stranger_photo["message_id"]].startswith("水印已去除") and asked


async def test_the_command_menu_is_registered_once_per_language(
        tg: FakeBotAPI, tg_settings: Settings, client: PicWishClient) -> None:  # noqa: F811
    admin = tg.person("Ada")
    tg.private_chat(admin)
    settings = tg_settings.model_copy(update={"admins": frozenset({f"telegram:{admin['id']}"})})
    async with open_service(settings, remover=client) as service, polling(service, settings, tg):
        menus = dict(tg.commands)

    assert menus["default"] == messages.telegram_commands()
    assert menus["default/zh"] == messages.telegram_commands(tr=ZH)
    assert menus[f"chat:{admin['id']}/zh"] == messages.telegram_commands(admin=True, tr=ZH)
    assert all(chinese(description) for _, description in menus["default/zh"])
    assert [c.params.get("language_code") for c in tg.calls_to("setMyCommands")] == [None, None, "zh", "zh"]


async def test_unmark_language_answers_everybody_in_it(
        tg: FakeBotAPI, tg_settings: Settings, client: PicWishClient) -> None:  # noqa: F811
    forced = tg_settings.model_copy(update={"language": "zh"})
    chat = tg.private_chat()  # Alice's app says nothing of her language
    async with open_service(forced, remover=client) as service, polling(service, forced, tg):
        tg.send_text(chat, "/help")
        await tg.wait_for(lambda: tg.transcript(chat))
        menus = dict(tg.commands)
    assert tg.transcript(chat) == [messages.telegram_help(tg.bot_user["username"], tr=ZH)]
    assert menus["default"] == menus["default/zh"] == messages.telegram_commands(tr=ZH)


# --- Slack --------------------------------------------------------------------------------------------------


@pytest.fixture
async def slack_zh(settings: Settings, client: PicWishClient) -> AsyncIterator[Slack]:
    """The Slack bot, and Alice (U0ALICE) with Slack in Simplified Chinese."""
    fake = FakeSlack()
    fake.locales["U0ALICE"] = "zh-CN"
    async with running(settings, client, fake=fake) as slack:
        yield slack


async def test_a_chinese_slack_user_reads_every_answer_in_chinese(slack_zh: Slack) -> None:
    slack, fake = slack_zh, slack_zh.fake
    help_ack = await slack.post_form(fake.slash_command("help"))
    hint_ack = await slack.post_form(fake.slash_command("frobnicate"))
    await slack.dm(text="usage")
    await slack.settle()
    await slack.dm(text="hello")
    await slack.settle()
    await slack.deliver(fake.event_callback(fake.mention_event(channel="C0GENERAL", text="what is this?")))
    await slack.settle()
    await slack.dm(fake.add_file(jpeg(320, 240, seed=4), "beach.jpg"))
    await slack.settle()
    await slack.deliver(fake.event_callback({"type": "app_home_opened", "user": "U0ALICE", "channel": DM,
                                             "tab": "home", "event_ts": "1.0"}))
    await slack.settle()

    tr = ZH
    assert help_ack.json()["text"] == f"{messages.about(tr=tr)}\n\n{tr.gettext(messages.SLACK_HELP)}"
    assert hint_ack.json()["text"] == tr.gettext(messages.SLACK_COMMAND_HINT)
    usage, hello, *_ = [m.text for m in fake.in_channel(DM) if not m.deleted]
    assert usage.startswith("今日已处理图片：0 张") and hello == help_ack.json()["text"]
    [no_image] = fake.in_channel("C0GENERAL")
    assert no_image.text == tr.gettext(messages.SLACK_NO_IMAGE)
    [upload] = fake.uploads
    assert upload.initial_comment.startswith("水印已去除，用时")
    [status] = [m for m in fake.in_channel(DM) if m.deleted]
    assert all(chinese(text) for text in status.texts)
    blocks = fake.views[-1]["view"]["blocks"]
    assert blocks[0]["text"]["text"] == "unmark：去除水印" and all(chinese(b["text"]["text"]) for b in blocks[1:])
    # Slack was asked once for Alice's locale; the answer is remembered.
    [asked] = fake.called("users.info")
    assert (asked.params["user"], asked.params["include_locale"]) == ("U0ALICE", "1")


async def test_every_failure_is_told_in_chinese_through_slack(settings: Settings) -> None:
    fake = FakeSlack()
    fake.locales["U0ALICE"] = "zh-CN"
    async with running(settings, ScriptedRemover(FAILURES), fake=fake) as slack:
        names = [f"photo{n:02d}.jpg" for n in range(len(FAILURES))]
        await slack.dm(*(fake.add_file(jpeg(64, 48, seed=n), name) for n, name in enumerate(names)))
        await slack.settle()

    told = dict(message.text.split("：", 1) for message in fake.in_channel(DM))  # each status line, labelled
    assert [told[name] for name in names] == [messages.describe(e, tr=ZH) for e in FAILURES]


async def test_a_slack_locale_without_a_catalog_reads_english(settings: Settings, client: PicWishClient) -> None:
    fake = FakeSlack()
    fake.locales["U0ALICE"] = "fr-FR"
    async with running(settings, client, fake=fake) as slack:
        ack = await slack.post_form(fake.slash_command("help"))
    assert ack.json()["text"] == f"{messages.about()}\n\n{messages.SLACK_HELP}"


# --- the terminal ---------------------------------------------------------------------------------------------


async def test_the_shell_chat_speaks_the_terminals_language(settings: Settings, client: PicWishClient,
                                                           tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(jpeg(320, 240))
    typed = io.StringIO("/help\n/usage\n/frobnicate\nmissing.jpg\nphoto.jpg\n/quit\n")
    out = io.StringIO()
    async with open_service(settings, remover=client) as service:
        await shell.run(service, settings, out_dir=tmp_path / "o", stdin=typed, stdout=out, language="zh_CN.UTF-8")

    hint, help_, again, usage, unknown, missing, saved = out.getvalue().splitlines()
    assert (hint, help_, again) == (ZH.gettext(messages.SHELL_HINT), ZH.gettext(messages.SHELL_HELP),
                                    ZH.gettext(messages.SHELL_HELP))
    assert usage.startswith("今日已处理图片：0 张；这里不设每日限额。") and unknown == ZH.gettext(messages.NOT_A_COMMAND)
    assert missing == "无法读取 missing.jpg。请检查路径后重试。"
    assert saved.startswith("水印已去除，用时") and saved.endswith(f"已保存到 {tmp_path / 'o' / 'photo-clean.jpg'}")


@pytest.mark.parametrize(("environment", "expected"), [
    ({"LANG": "zh_CN.UTF-8"}, "missing.jpg：无法读取 missing.jpg。请检查路径后重试。"),
    ({"LC_ALL": "en_US.UTF-8", "LANG": "zh_CN.UTF-8"},
     "missing.jpg: I can't read missing.jpg. Check the path and try again."),
    ({"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "fr_FR.UTF-8"}, "missing.jpg：无法读取 missing.jpg。请检查路径后重试。"),
    ({"LANG": "fr_FR.UTF-8"}, "missing.jpg: I can't read missing.jpg. Check the path and try again."),
    ({"LANG": "C.UTF-8", "UNMARK_LANGUAGE": "zh"}, "missing.jpg：无法读取 missing.jpg。请检查路径后重试。"),
], ids=["LANG", "LC_ALL before LANG", "LC_MESSAGES before LANG", "no catalog", "UNMARK_LANGUAGE"])
async def test_unmark_clean_reads_the_language_from_the_environment(environment: dict[str, str],
                                                                  expected: str) -> None:
    status, out, err = await unmark("clean", "missing.jpg", env=environment)
    assert (status, out.strip()) == (1, expected), err
