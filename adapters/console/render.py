"""Core results and errors as terminal output (rich), plus the console's Notifier.

Two modes: a terminal gets colour, panels and a live progress bar; anything else (a script, a pipe, a test)
gets plain lines that read well in a log, with progress printed at most every 10 %.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from prompt_toolkit.application import get_app_or_none, run_in_terminal
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.characters.references import ReferenceFiles
from bot.chat import present
from bot.chat.notify import VideoNotice
from bot.errors import SoracastError
from bot.models import (
    AccessRequest,
    BudgetKind,
    Character,
    DeliveryReceipt,
    Generation,
    GenerationKind,
    GenerationStatus,
    Scope,
)
from bot.videos.budgets import Usage
from bot.videos.generations import GenerationService, LineEntry

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Plain output prints a progress line only when the job has moved on by at least this many percent.
PLAIN_PROGRESS_STEP = 10

# The core writes people as chat mentions (`<@ana>`); the terminal shows them as `@ana`.
_MENTION = re.compile(r"<@([^>\s]+)>")


def console_person(person_id: str) -> str:
    """A person as the terminal shows them."""
    return f"@{person_id}"


def plain_people(text: str) -> str:
    """Core wording with its chat mentions written the terminal's way."""
    return _MENTION.sub(r"@\1", text)


class ConsoleView:
    """Everything the console prints goes through here, so both output modes stay consistent."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self.console = console
        #: Live widgets (progress bars, colour panels) only make sense on a terminal.
        self.live = live
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._plain_marks: dict[str, int] = {}
        #: The last "Waiting — 2nd in line" printed per generation: plain output prints each change once.
        self._plain_waiting: dict[str, str] = {}

    # --- output that may arrive while the prompt is on screen -----------------------------------------------

    async def emit(self, draw: Callable[[], T]) -> T:
        """Print now, or above the prompt when prompt_toolkit owns the terminal (a resumed job finishing)."""
        app = get_app_or_none()
        if app is not None and app.is_running:
            return await run_in_terminal(draw)
        return draw()

    def line(self, text: str, style: str | None = None) -> None:
        # soft_wrap keeps file paths on one line, so they can be copied (or grepped in a log) whole.
        self.console.print(text, style=style, soft_wrap=True, markup=False, highlight=False)

    # --- session ----------------------------------------------------------------------------------------------

    def banner(self, *, renderer: str, scope_id: str, data_dir: Path, log_file: Path | None = None) -> None:
        """Welcome: which backend makes the videos, where things are kept, and what to type first."""
        lines = [
            f"Videos come from {renderer}.",
            f"Workspace: console:{scope_id} · data in {data_dir}"
            + (f" · log in {log_file}" if log_file is not None else ""),
            "New here? Type /demo to make a sample character and a first video. /help lists every command.",
        ]
        if self.live:
            self.console.print(Panel("\n".join(escape(x) for x in lines), title="soracast try", border_style="cyan"))
        else:
            self.line("soracast try")
            for text in lines:
                self.line(text)

    def echo(self, command: str) -> None:
        """Show a scripted command before its output, as if it had been typed."""
        self.line(f"> {command}", style="bold")

    def info(self, text: str) -> None:
        self.line(text)

    def success(self, text: str) -> None:
        self.line(text, style="green")

    def step(self, number: int, total: int, text: str) -> None:
        """One numbered step of a multi-step command such as /demo."""
        self.line(f"[{number}/{total}] {text}", style="bold cyan")

    # --- errors -----------------------------------------------------------------------------------------------

    def error(self, err: SoracastError) -> None:
        """A core failure, in the same words every chat adapter uses (mentions as `@person`)."""
        self._error_box(present.error_title(err), plain_people(err.user_text()))

    def unexpected(self, exc: BaseException) -> None:
        """A bug rather than bad input: say so briefly; the traceback goes to the log."""
        detail = str(exc).rstrip(". ") or "no message"
        self._error_box("Something went wrong", f"{type(exc).__name__}: {detail}. The details are in the log.")

    def _error_box(self, title: str, body: str) -> None:
        if self.live:
            self.console.print(Panel(escape(body), title=escape(title), title_align="left", border_style="red"))
        else:
            # A one-line error stays readable (and greppable) in a script's log.
            self.line(f"Error: {title}. {body}")

    # --- characters -------------------------------------------------------------------------------------------

    def characters(self, characters: Sequence[Character]) -> None:
        if not characters:
            self.info("No characters yet. Add one with /character add @handle clip.mp4, or try /demo.")
            return
        table = Table(title=f"{len(characters)} character(s)", show_lines=False)
        table.add_column("handle", style="bold")
        table.add_column("name")
        table.add_column("from")
        table.add_column("added")
        for c in characters:
            origin = f"video {c.source_ref}" if c.source.value == "generation" else (c.source_ref or "upload")
            table.add_row(f"@{c.handle}", c.name, origin, c.created_at.strftime("%Y-%m-%d %H:%M"))
        self.console.print(table)

    def character(self, c: Character, files: ReferenceFiles) -> None:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("handle", f"@{c.handle}")
        table.add_row("name", c.name)
        table.add_row("references", present.references_line(c))
        if files.clip is not None:
            table.add_row("clip", str(files.clip.resolve()))
        for index, still in enumerate(files.stills, 1):
            table.add_row(f"still {index}", str(still.resolve()))
        table.add_row("source", f"{c.source.value} ({c.source_ref or '-'})")
        table.add_row("added", c.created_at.strftime("%Y-%m-%d %H:%M:%S %Z"))
        for line in present.owner_settings_lines(c, console_person):
            label, _, value = line.partition(": ")
            table.add_row(label.lower(), value)
        self.console.print(table)

    def requests(self, waiting: Sequence[tuple[AccessRequest, Character]]) -> None:
        """`/character requests`: those waiting for this person's answer, with how to answer."""
        self.info(present.requests_summary(len(waiting)))
        for request, character in waiting:
            self.line(f"  {present.request_line(request, character, console_person)}")
        if waiting:
            self.info("Answer with /character approve <request id> or /character decline <request id>.")

    def character_videos(self, character: Character, generations: Sequence[Generation]) -> None:
        """`/character videos @h`: every video featuring it, newest first, and how to take one down."""
        self.info(present.videos_summary(character, len(generations), len(generations)))
        for text in present.video_lines(generations, person=console_person, where=lambda g: "in the terminal"):
            self.line(f"  {text}")
        if generations:
            self.info("Delete any of them with /character takedown <video id>.")

    def private(self, person_id: str, lines: Sequence[str]) -> None:
        """A private message for someone in this workspace (the terminal shows it to whoever is at it)."""
        self.line(f"Private message for {console_person(person_id)}:", style="bold magenta")
        for text in lines:
            self.line(f"  {plain_people(text)}")

    # --- generations ------------------------------------------------------------------------------------------

    def videos(self, generations: Sequence[Generation]) -> None:
        if not generations:
            self.info("No videos yet. Make one with /sora @handle <prompt>.")
            return
        table = Table(title=f"{len(generations)} recent video(s)")
        table.add_column("id", style="bold", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("prompt", overflow="fold")
        # The path is what a user copies, so it never wraps; the prompt gives way instead.
        table.add_column("file", no_wrap=True)
        for g in generations:
            kind = g.kind.value + (f" of {g.parent_id}" if g.parent_id else "")
            status = g.status.value.replace("_", " ")
            if not g.status.finished:
                status += f" {g.progress}%"
            path = str(g.video_path.resolve()) if g.video_path else ""
            table.add_row(g.id, kind, status, g.prompt, path)
        self.console.print(table)

    def submitted(self, generation: Generation) -> None:
        self.line(present.headline(generation), style="bold")
        self.line(present.details_line(generation), style="dim")

    def watch(self, generation: Generation) -> None:
        """Start showing a generation's progress; the Notifier feeds it and ends it."""
        if not self.live:
            self._plain_marks[generation.id] = -PLAIN_PROGRESS_STEP
            self.progress(generation)
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        self._tasks[generation.id] = self._progress.add_task(
            self._describe(generation), total=100, completed=generation.progress
        )

    def progress(self, generation: Generation) -> None:
        """Move a watched generation's bar, or print a line for one nobody is watching (a resumed job)."""
        task = self._tasks.get(generation.id)
        if self._progress is not None and task is not None:
            self._progress.update(task, completed=generation.progress, description=self._describe(generation))
            return
        if generation.status is GenerationStatus.WAITING:
            self._print_waiting(generation)
            return
        mark = self._plain_marks.get(generation.id)
        if mark is not None and generation.progress < mark + PLAIN_PROGRESS_STEP:
            return
        # Snap to the step below so lines read 0 %, 10 %, 20 % … whatever the API's increments.
        self._plain_marks[generation.id] = generation.progress - generation.progress % PLAIN_PROGRESS_STEP
        self.line(f"  {generation.id}: {present.status_line(generation)}", style="dim")

    def _print_waiting(self, generation: Generation) -> None:
        text = present.status_line(generation)
        if self._plain_waiting.get(generation.id) == text:
            return
        self._plain_waiting[generation.id] = text
        self.line(f"  {generation.id}: {text}", style="dim")

    def unwatch(self, generation_id: str) -> None:
        """Stop a generation's bar; the live display closes once no bar is left."""
        self._plain_marks.pop(generation_id, None)
        self._plain_waiting.pop(generation_id, None)
        task = self._tasks.pop(generation_id, None)
        if self._progress is None:
            return
        if task is not None:
            self._progress.remove_task(task)
        if not self._tasks:
            self._progress.stop()
            self._progress = None

    def completed(self, generation: Generation, next_steps: Sequence[str]) -> DeliveryReceipt:
        self.unwatch(generation.id)
        video = generation.video_path
        if video is None or not video.exists():
            self.line(f"Video {generation.id} finished, but its file is missing.", style="yellow")
            return DeliveryReceipt(message_id=None, attached=False, note="file missing")
        self.success(f"Video {generation.id} is ready: {video.resolve()}")
        self.info(f"  {present.details_line(generation)}")
        if generation.thumbnail_path is not None:
            self.info(f"  thumbnail: {generation.thumbnail_path.resolve()}")
        self.info("  next: " + " · ".join(next_steps))
        return DeliveryReceipt(message_id=None)

    def failed(self, generation: Generation) -> None:
        self.unwatch(generation.id)
        if generation.status is GenerationStatus.CANCELLED:
            self.line(f"Video {generation.id}: {present.status_line(generation)}", style="yellow")
            return
        self._error_box(f"Video {generation.id} failed", present.failure_text(generation))

    @staticmethod
    def _describe(generation: Generation) -> str:
        if generation.status is GenerationStatus.WAITING:
            return f"{generation.id} {present.status_line(generation).lower()}"
        label = "queued" if generation.status is GenerationStatus.QUEUED else "rendering"
        return f"{generation.id} {label}"

    # --- the line and budgets ---------------------------------------------------------------------------------

    def queue(self, entries: Sequence[LineEntry]) -> None:
        """`/queue`: this workspace's waiting videos, next first."""
        self.info(present.line_summary(entries))
        for text in present.line_lines(entries, person=str):
            self.line(f"  {text}")

    def usage(self, usage: Usage) -> None:
        """`/usage`: the month's spending, per person and model."""
        first, *rest = present.usage_lines(usage, person=str)
        self.line(first, style="bold")
        for text in rest:
            self.line(f"  {text}")

    def limits(self, limits: Mapping[BudgetKind, float | None]) -> None:
        """`/limits`: what applies here, and how to change it."""
        for text in present.limits_lines(limits, "/limits --monthly-usd <USD> --daily-seconds <seconds>"):
            self.line(text)

    # --- help -------------------------------------------------------------------------------------------------

    def help(self, rows: Sequence[tuple[str, str]]) -> None:
        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for usage, summary in rows:
            table.add_row(escape(usage), escape(summary))
        self.console.print(table)


class ConsoleNotifier:
    """The core's Notifier and Messenger for Platform.CONSOLE: progress, the saved file's path, or why it failed;
    private messages are printed for whoever they are for, with the words that answer them."""

    def __init__(self, view: ConsoleView, generations: GenerationService) -> None:
        self._view = view
        self._generations = generations

    async def progress(self, generation: Generation) -> None:
        await self._view.emit(lambda: self._view.progress(generation))

    async def completed(self, generation: Generation) -> DeliveryReceipt:
        steps = present.next_steps(
            generation,
            can_remix=self._generations.can_derive(generation, GenerationKind.REMIX),
            can_extend=self._generations.can_derive(generation, GenerationKind.EXTEND),
        )
        return await self._view.emit(lambda: self._view.completed(generation, steps))

    async def failed(self, generation: Generation) -> None:
        await self._view.emit(lambda: self._view.failed(generation))

    # --- Messenger ----------------------------------------------------------------------------------------

    async def ask_owner(self, scope: Scope, request: AccessRequest, character: Character) -> bool:
        lines = [
            present.request_text(request, character, console_person),
            f"Approve: /character approve {request.id} · Decline: /character decline {request.id}",
        ]
        await self._view.emit(lambda: self._view.private(character.owner_id, lines))
        return True

    async def tell_requester(self, scope: Scope, request: AccessRequest, character: Character) -> bool:
        text = present.decision_text(request, character, console_person)
        await self._view.emit(lambda: self._view.private(request.requester_id, [text]))
        return True

    async def tell_owner(self, scope: Scope, owner_id: str, notices: Sequence[VideoNotice]) -> bool:
        links = {n.generation.id: _file_link(n.generation) for n in notices}
        lines = [
            present.owner_notice_title(len(notices)),
            *present.owner_notice_lines(notices, links, person=console_person),
        ]
        await self._view.emit(lambda: self._view.private(owner_id, lines))
        return True

    async def remove_post(self, generation: Generation) -> None:
        """The terminal's "post" is the file, which the core deletes itself."""


def _file_link(generation: Generation) -> str | None:
    """Where a video is in the terminal: its file."""
    return str(generation.video_path.resolve()) if generation.video_path is not None else None

