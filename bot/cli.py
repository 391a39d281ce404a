"""`unmark`: the composition root. Reads Settings once, opens the service, starts what was asked for."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import click
from pydantic import SecretStr

from bot.config import Settings, SettingsError, load_settings, terminal_language
from bot.errors import EngineBroken
from bot.outputs import OutputFolder

logger = logging.getLogger("unmark")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OVERWRITE_HELP = ("Replace a result already in the output folder; without it a new result takes the next free "
                  "name (photo-clean-2.jpg). Results of one run never replace each other.")


def _settings(*, quiet: bool | Callable[[Settings], bool] = False) -> Settings:
    """Read the settings once; ``quiet`` commands log only warnings unless UNMARK_LOG_LEVEL says otherwise."""
    try:
        settings = load_settings()
    except SettingsError as error:
        click.echo(f"unmark: bad setting {error}", err=True)
        sys.exit(2)
    if callable(quiet):
        quiet = quiet(settings)
    level = "WARNING" if quiet and "log_level" not in settings.model_fields_set else settings.log_level
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)
    _mask_secrets(settings)
    # httpx logs every request URL at INFO; a Telegram URL contains the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG: whole images, for the result cache.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    return settings


def _mask_secrets(settings: Settings) -> None:
    """Mask every secret setting in every log line, whoever logs it: PTB logs its API URL, token included, at DEBUG."""
    secrets: list[str] = []
    for value in dict(settings).values():
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, SecretStr) and len(item.get_secret_value()) >= 6:
                secrets.append(item.get_secret_value())
    if settings.shared and (password := urlsplit(settings.database).password):  # postgresql://user:password@…
        secrets.append(password)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_Masking(LOG_FORMAT, sorted(secrets, key=len, reverse=True)))


class _Masking(logging.Formatter):
    """The usual format, then each secret replaced by ``***`` (tracebacks included)."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _run_async(coroutine) -> None:  # type: ignore[no-untyped-def]
    """Run a command's coroutine; a failure we can name becomes one line and exit status 2."""
    try:
        asyncio.run(coroutine)
    except (SettingsError, EngineBroken) as error:
        click.echo(f"unmark: {error}", err=True)
        sys.exit(2)
    except BaseExceptionGroup as group:  # `run`'s adapters share a TaskGroup, which wraps what they raise
        named = group.subgroup((SettingsError, EngineBroken))
        if named is None:
            raise
        error: BaseException = named
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        click.echo(f"unmark: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except asyncio.CancelledError:  # SIGTERM (see _stop_on_sigterm): the adapters have finished their jobs
        sys.exit(0)


def _stop_on_sigterm(*, first: asyncio.Task[None] | None = None) -> None:
    """Platforms stop a process with SIGTERM: cancel the command's task, so adapters let running jobs finish.

    ``first`` (a queue worker beside the adapters) is stopped before them: its running jobs answer through
    the adapters' platforms, which must stay open until it has let them finish.
    """
    task = asyncio.current_task()
    assert task is not None

    def stop() -> None:
        if first is None or first.done():
            task.cancel()
        else:
            first.cancel()
            first.add_done_callback(lambda _: task.cancel())

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)


def _needs_shared_database(settings: Settings, what: str) -> None:
    if not settings.shared:
        click.echo(f"unmark: bad setting UNMARK_DATABASE: {what} needs the shared job queue: set it to a "
                   "postgresql:// URL (with a SQLite file, `unmark run` does the work itself)", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Remove watermarks from images, in Telegram, Slack or this terminal."""


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("unmark-out"),
              show_default=True, help="Folder the shell chat writes results into.")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
@click.option("--webhook", is_flag=True,
              help="The web process: serve webhooks (TELEGRAM_WEBHOOK_URL) and GET /healthz on $PORT.")
@click.option("--no-work", is_flag=True,
              help="With UNMARK_DATABASE=postgresql://…: only receive and queue images; `unmark worker` "
                   "processes clean them.")
def run(out: Path, overwrite: bool, webhook: bool, no_work: bool) -> None:
    """Start every platform configured in the environment; with none, a chat in this terminal."""
    # A terminal chat (no platform configured) is no place for INFO logs.
    settings = _settings(quiet=lambda s: not webhook and s.telegram_mode is None and s.slack_mode is None)
    if no_work:
        _needs_shared_database(settings, "--no-work")

    async def serve() -> None:
        from adapters import plan, shell  # the one place bot/ reaches into adapters
        from bot.core import open_service

        runners = plan(settings, webhook=webhook)
        async with open_service(settings) as service, asyncio.TaskGroup() as group:
            # With PostgreSQL, the chats' images go to the shared queue; this process works it too, unless told not.
            working = service.queue is not None and not no_work and shell.run not in runners
            worker = group.create_task(service.work()) if working else None
            if shell.run not in runners:  # the shell's blocking stdin read would hold a graceful exit hostage
                _stop_on_sigterm(first=worker)
            for runner in runners:
                if runner is shell.run:
                    group.create_task(shell.run(service, settings, out_dir=OutputFolder(out, overwrite=overwrite),
                                                language=terminal_language()))
                else:
                    group.create_task(runner(service, settings))

    _run_async(serve())


@main.command()
def worker() -> None:
    """Clean the images in the shared queue (UNMARK_DATABASE=postgresql://…), answering in their chats."""
    settings = _settings()
    _needs_shared_database(settings, "`unmark worker`")

    async def work() -> None:
        from adapters import open_platforms  # the platforms it answers through
        from bot.core import open_service

        _stop_on_sigterm()
        async with open_service(settings) as service, open_platforms(service, settings) as names:
            logger.info("worker: cleaning queued images for %s", ", ".join(names))
            await service.work()

    _run_async(work())


@main.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("unmark-out"),
              show_default=True, help="Folder the cleaned images are written into.")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def clean(sources: tuple[str, ...], out: Path, overwrite: bool) -> None:
    """Clean images (paths or http(s) links) once; exit status 0 only if every one succeeded."""
    settings = _settings(quiet=True)
    failures = 0

    async def clean_all() -> None:
        nonlocal failures
        from tqdm import tqdm

        from adapters.shell import LocalPlatform, ShellReplies, job_for, local_chat
        from bot import messages
        from bot.core import open_service

        chat = local_chat("cli")
        folder = OutputFolder(out, overwrite=overwrite)  # one for every argument: their results never clash
        several = len(sources) > 1
        language = terminal_language()
        async with open_service(settings) as service:
            tr = service.translations(language)
            with tqdm(total=len(sources), unit="image", disable=not several, file=sys.stderr) as bar:
                platform = LocalPlatform("cli", lambda job: ShellReplies(
                    folder, stream=_TqdmLines(bar, prefix=messages.labelled(job.source, "", tr=tr)),
                    status=None if several else sys.stderr, tr=tr))
                if left := await service.attach_anew(platform):
                    bar.write(messages.unfinished([job.source for job in left], tr=tr), file=sys.stderr)
                for source in sources:
                    outcome = await service.handle(job_for(chat, source, out_dir=folder.path, language=language))
                    failures += not outcome.ok
                    bar.update()

    _run_async(clean_all())
    sys.exit(1 if failures else 0)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on; 0.0.0.0 for all.")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on.  [default: $PORT, else 8080]")
@click.option("--public-url", help="Base URL clients reach this server at, for result links (data.file).  "
                                   "[default: $UNMARK_PUBLIC_URL, else the host each request was sent to]")
def serve(host: str, port: int | None, public_url: str | None) -> None:
    """Serve a PicWish-compatible watermark removal API over the local engine (keys: UNMARK_API_KEYS)."""
    settings = _settings()
    if public_url is not None:
        if not public_url.startswith(("http://", "https://")):
            raise click.BadParameter("must start with http:// or https://", param_hint="--public-url")
        settings = settings.model_copy(update={"public_url": public_url})
    from bot.server import (
        ServerNotStarted,  # Starlette, uvicorn and the worker pool load only for `serve`
    )
    from bot.server import serve as serve_api

    try:
        _run_async(serve_api(settings, host=host, port=settings.port if port is None else port))
    except ServerNotStarted as error:
        click.echo(f"unmark: {error}", err=True)
        sys.exit(2)


@main.command()
@click.option("--platform", help="Only this platform (telegram, slack, shell, cli).")
@click.option("--chat", "chat_id", help="Only this chat id.")
@click.option("--days", type=click.IntRange(min=1), help="Only chats active in the last N days.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def usage(platform: str | None, chat_id: str | None, days: int | None, as_json: bool) -> None:
    """Show usage per chat from the jobs database."""
    settings = _settings(quiet=True)

    async def show() -> None:
        from bot.usage import UsageStore

        async with UsageStore.open(settings.database) as store:
            rows = await store.usage(platform=platform, chat_id=chat_id, days=days)
        if as_json:
            click.echo(json.dumps([asdict(row) for row in rows], indent=2))
        else:
            click.echo(format_usage(rows))

    _run_async(show())


@main.group()
def bench() -> None:
    """Measure the local engine against baselines on a fixed, held-out synthetic set."""


@bench.command("engine")
@click.option("--quick", is_flag=True, help="A smoke run: 2 images per family.")
@click.option("--n", "n", type=click.IntRange(min=1),
              help="Images per family.  [default: 12; with --split val 36 photos, 24 signs, 12 backdrops; 2 with "
                   "--quick]")
@click.option("--megapixels", type=click.FloatRange(min=0.01, max=100), default=1.0, show_default=True,
              help="Size of each marked photo; results go to engine-<N>mp.json unless it is 1.")
@click.option("--methods", help="Comma-separated subset, e.g. noop,mark_engine.  [default: all]")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="test: the held-out set of the table; val: photos kept out of training, for choosing settings.")
@click.option("--on", "on", type=click.Choice(["photos", "backdrops", "signs"]), default="photos", show_default=True,
              help="photos: the split's marked, clean and real-text photos; backdrops: its marks on plain grounds "
                   "(a studio wall, a sky); signs: text painted into its photos, to be left alone.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results"),
              show_default=True, help="Folder for engine.json and engine-grid.png.")
def bench_engine(quick: bool, n: int | None, megapixels: float, methods: str | None, split: Literal["test", "val"],
                 on: Literal["photos", "backdrops", "signs"], out: Path) -> None:
    """Run no-op, oracle-mask Telea and the engines side by side; print one table (needs benchmarks/assets.sh)."""
    from tqdm import tqdm

    from bot.lab import (
        bench as engine_bench,  # numpy, OpenCV and the engines load only for this command
    )
    from bot.lab import report

    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    unknown = sorted(set(chosen or ()) - set(engine_bench.METHODS))
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(engine_bench.METHODS)}",
                                 param_hint="--methods")

    bars: list[tqdm] = []  # the bar appears with the first image, so a set that cannot be built shows none

    def advance(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="image", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        text = report.benchmark(out, n=n or (report.QUICK_N if quick else None), megapixels=megapixels,
                                methods=chosen, progress=advance, split=split, on=on)
    except (FileNotFoundError, EngineBroken) as error:
        click.echo(f"unmark: {error}", err=True)
        sys.exit(2)
    finally:
        for bar in bars:
            bar.close()
    click.echo(text)
    json_path, grid_path = report.outputs(out, megapixels, split, on)
    click.echo(f"\nwrote {json_path} and {grid_path}")


def format_usage(rows: list) -> str:  # type: ignore[type-arg]
    """A plain table of usage rows."""
    header = ("platform", "chat", "today", "30 days", "all time", "failed", "refused", "cached", "no mark",
              "success", "median s")
    lines = [header]
    for row in rows:
        lines.append((
            row.platform, row.chat_id, str(row.today), str(row.last_30_days), str(row.all_time), str(row.failed),
            str(row.refused), str(row.cached), str(row.unchanged), "-" if row.success_rate is None else f"{row.success_rate:.0%}",
            "-" if row.median_seconds is None else f"{row.median_seconds:.1f}",
        ))
    if len(lines) == 1:
        return "No jobs recorded yet."
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


class _TqdmLines:
    """A text stream that prints whole lines above a tqdm bar, each prefixed with its source."""

    def __init__(self, bar, prefix: str) -> None:  # type: ignore[no-untyped-def]
        self.bar, self.prefix = bar, prefix

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line:
                self.bar.write(self.prefix + line, file=sys.stdout)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


if __name__ == "__main__":  # pragma: no cover
    main()
