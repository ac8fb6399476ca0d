"""`soracast try`: the core in a terminal — an interactive prompt, or a script / piped commands, one per line."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from rich.console import Console

from adapters.console.commands import ConsoleCommands, Outcome
from adapters.console.completion import ConsoleCompleter
from adapters.console.render import ConsoleNotifier, ConsoleView
from bot.app import Soracast, build_app
from bot.chat import present
from bot.config import Settings
from bot.errors import InvalidInput
from bot.models import Actor, Platform, Scope

log = logging.getLogger(__name__)

HISTORY_FILE = "console_history"
LOG_FILE = "console.log"
PROMPT = "soracast> "


def console_identity() -> tuple[Scope, Actor]:
    """The console user's own workspace, where they are the admin: keyed by the OS user name."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = ""
    # Scope ids are short keys; an odd login name must not stop the console from starting.
    ident = re.sub(r"[^\w.@-]", "_", name)[:64] or "local"
    return Scope(platform=Platform.CONSOLE, id=ident), Actor(id=ident, display_name=name or ident, is_admin=True)


async def run_console(
    settings: Settings,
    *,
    script: Path | None = None,
    interactive: bool | None = None,
    core: Soracast | None = None,
    console: Console | None = None,
) -> int:
    """Run a console session and return its exit code: 1 if any scripted command failed, else 0.

    `interactive=None` means a prompt when stdin is a terminal and no script is given. Tests may pass a
    prebuilt `core` (left open for them to inspect) and a `console` to capture output.
    """
    script_lines = await asyncio.to_thread(_read_script, script) if script is not None else None
    if interactive is None:
        interactive = script is None and sys.stdin.isatty()
    prompting = interactive and script_lines is None
    if console is None:
        # Off a terminal rich prints no colour; a fixed, wide width keeps tables of file paths readable in logs.
        console = Console() if sys.stdout.isatty() else Console(width=120)
    view = ConsoleView(console, live=console.is_terminal)
    log_file = settings.data_dir / LOG_FILE
    # At a live prompt, log lines on stderr would tear through the prompt and the progress bars.
    to_file = prompting and view.live
    with _logs_to_file(log_file) if to_file else contextlib.nullcontext():
        app = core if core is not None else await build_app(settings)
        try:
            scope, actor = console_identity()
            app.generations.register_notifier(Platform.CONSOLE, ConsoleNotifier(view, app.generations))
            view.banner(
                renderer=present.describe_backend(app.backend, app.catalog.default_model()),
                scope_id=scope.id,
                data_dir=settings.data_dir,
                log_file=log_file if to_file else None,
            )
            resumed = await app.generations.resume(Platform.CONSOLE)
            if resumed:
                view.info(f"Picking up {resumed} unfinished video(s) from last time; they are reported when done.")
            commands = ConsoleCommands(app, view, scope, actor)
            if prompting:
                await _repl(commands, settings, ConsoleCompleter(app.registry, scope))
                return 0
            lines = _iterate(script_lines) if script_lines is not None else _stdin_lines()
            return await _run_lines(commands, lines)
        finally:
            if core is None:
                await app.aclose()


@contextlib.contextmanager
def _logs_to_file(path: Path) -> Iterator[None]:
    """Send what the root logger writes to the terminal into `path` instead, with the same format and filters."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    swapped: list[tuple[logging.Handler, logging.Handler]] = []
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            if getattr(handler, "stream", None) not in (sys.stderr, sys.stdout):
                continue
            replacement = logging.FileHandler(path, encoding="utf-8", delay=True)
            replacement.setFormatter(handler.formatter)
            replacement.setLevel(handler.level)
            for f in handler.filters:
                replacement.addFilter(f)
            root.removeHandler(handler)
            root.addHandler(replacement)
            swapped.append((handler, replacement))
    try:
        yield
    finally:
        for original, replacement in swapped:
            root.removeHandler(replacement)
            replacement.close()
            root.addHandler(original)


async def _repl(commands: ConsoleCommands, settings: Settings, completer: ConsoleCompleter) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(settings.data_dir / HISTORY_FILE)),
        completer=completer,
        complete_while_typing=False,
    )
    while True:
        try:
            line = await session.prompt_async(PROMPT)
        except KeyboardInterrupt:
            # Ctrl-C clears the line, as in a shell; Ctrl-D (EOF) or /quit leaves.
            continue
        except EOFError:
            break
        if not line.strip():
            continue
        if await _run_one(commands, line) is Outcome.QUIT:
            break


async def _run_lines(commands: ConsoleCommands, lines: AsyncIterator[str]) -> int:
    """Run scripted commands in order, echoing each; the exit code says whether any failed."""
    failed = 0
    async for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        commands.view.echo(line)
        outcome = await _run_one(commands, line)
        if outcome is Outcome.QUIT:
            break
        if outcome is Outcome.FAILED:
            failed += 1
    return 1 if failed else 0


async def _run_one(commands: ConsoleCommands, line: str) -> Outcome:
    try:
        return await commands.run(line)
    except Exception as exc:
        # A bug must not end the session (or a script half-way); the traceback goes to the log.
        log.exception("console command failed: %s", line.split(" ", 1)[0])
        commands.view.unexpected(exc)
        return Outcome.FAILED


def _read_script(path: Path) -> list[str]:
    if not path.is_file():
        raise InvalidInput(f"There is no script at {path}.", hint="Give a text file with one command per line.")
    return path.read_text(encoding="utf-8").splitlines()


async def _iterate(lines: list[str]) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _stdin_lines() -> AsyncIterator[str]:
    # Read one line at a time so commands piped from another program run as they arrive.
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        yield line
