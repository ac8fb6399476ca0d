"""The request log of an emulated API: every request that reached it, with its body's fields and files, and how
it was answered; tests assert on it (`faults.requests.last("create_video").json["prompt"]`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict


@dataclass
class UploadedFile:
    """One file part of a multipart request."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """What reached the emulator, and how it answered (`status`, and `fault` when a fault answered)."""

    method: str
    path: str  # as received, with the prefix (e.g. /v1/videos)
    route: str | None  # a name from ROUTES, None for unknown paths
    query: dict[str, str]
    headers: CIMultiDict[str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)  # last value of each text field
    form_items: list[tuple[str, str]] = field(default_factory=list)  # every text field, in order
    files: dict[str, UploadedFile] = field(default_factory=dict)
    content_type: str = ""
    body_size: int = 0
    status: int | None = None
    fault: str | None = None
    received_at: float = field(default_factory=time.monotonic)


class RequestLog(list[RecordedRequest]):
    """Every request in arrival order, with helpers for the common assertions."""

    def for_route(self, route: str) -> list[RecordedRequest]:
        """The requests a route name (see ROUTES) received."""
        return [r for r in self if r.route == route]

    def last(self, route: str | None = None) -> RecordedRequest:
        """The latest request (of a route); IndexError when there is none."""
        matching = self.for_route(route) if route else list(self)
        if not matching:
            raise IndexError(f"no request{f' to {route}' if route else ''} was received")
        return matching[-1]

    def count(self, route: str) -> int:  # type: ignore[override]
        """How many requests a route received (list.count is replaced: counting records is never wanted)."""
        return len(self.for_route(route))
