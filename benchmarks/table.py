"""One table per benchmark: every script prints its figures the same way, so a run can be pasted as it is."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(title: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """Print `rows` of (figure, value, goal or note) under `title` as a Markdown table."""
    print(f"\n{title}\n")
    header = ("figure", "value", "goal / note")
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(3)]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("| " + " | ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)) + " |")
