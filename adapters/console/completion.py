"""Tab completion for the console prompt: command words, `/character` subcommands and this workspace's @handles."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from adapters.console.commands import CHARACTER_SUBCOMMANDS, COMMANDS
from bot.characters.registry import CharacterRegistry
from bot.models import Character, Scope


class ConsoleCompleter(Completer):
    """Completes `/so` → `/sora`, `/character re` → `remove`/`rename`, and `@ma` → `@mascot` from the registry.

    prompt_toolkit completes asynchronously with `prompt_async`, so each Tab reads the registry afresh; the
    synchronous path serves the characters that read found.
    """

    def __init__(self, registry: CharacterRegistry, scope: Scope) -> None:
        self._registry = registry
        self._scope = scope
        self._known: list[Character] = []

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        word = document.get_word_before_cursor(WORD=True)
        if word.startswith("@"):
            yield from _handle_completions(word, self._known)
            return
        yield from _word_completions(document, word)

    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        word = document.get_word_before_cursor(WORD=True)
        if word.startswith("@"):
            self._known = await self._registry.list(self._scope)
            for completion in _handle_completions(word, self._known):
                yield completion
            return
        for completion in _word_completions(document, word):
            yield completion


def _handle_completions(word: str, characters: Sequence[Character]) -> Iterable[Completion]:
    """Handles starting with what was typed first, then those whose name starts with it or that contain it."""
    needle = word[1:].lower()
    first = [c for c in characters if c.handle.startswith(needle)]
    then = [c for c in characters if c not in first and (c.name.lower().startswith(needle) or needle in c.handle)]
    for c in first + then:
        yield Completion(f"@{c.handle}", start_position=-len(word), display_meta=c.name)


def _word_completions(document: Document, word: str) -> Iterable[Completion]:
    before = document.text_before_cursor
    words = before.split()
    # Which position is being typed: the word under the cursor, or a new one after a space.
    index = len(words) - 1 if word else len(words)
    if index == 0:
        typed = word.lstrip("/").lower()
        for name in COMMANDS:
            if name.startswith(typed) and name != "exit":
                yield Completion(f"/{name}", start_position=-len(word))
    elif index == 1 and words[0].lstrip("/").lower() == "character":
        for sub in CHARACTER_SUBCOMMANDS:
            if sub.startswith(word.lower()):
                yield Completion(sub, start_position=-len(word))
