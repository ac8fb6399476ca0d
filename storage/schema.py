"""The numbered migration files each engine ships under storage/migrations/<engine>/."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Migration:
    """One `NNN_name.sql` file of an engine: applied once, in order of `version`."""

    version: int
    name: str
    sql: str


def migrations(engine: str) -> list[Migration]:
    """Every `NNN_name.sql` shipped in storage/migrations/<engine>, in version order.

    Versions are kept in step across engines: migration N makes the same schema change in each.
    """
    found = []
    for entry in resources.files("storage").joinpath("migrations", engine).iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append(Migration(int(name[:3]), name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two {engine} migrations share a number: {[m.name for m in found]}")
    return found
