"""Choosing a character's reference stills from its prepared clip: sharp, distinct, with the subject visible.

Runs in a worker thread (`asyncio.to_thread(pick_stills, …)`). Every frame of the (short, prepared) clip is
scored on a small grey copy: sharpness is the variance of a Laplacian, visibility is the picture's contrast
and how much detail sits in its centre (a blank, black or washed-out frame scores nothing). The best frame is
taken first; each next one is the frame whose score, weighted by how different it looks from those already
taken and how far away in time it is, is highest — so three stills show three views, not one view thrice.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

#: The width frames are analysed at; plenty to judge sharpness, cheap enough for every frame.
_ANALYSIS_WIDTH = 192
#: A frame whose luminance varies less than this (of 255) shows nothing: a blank, a fade.
_MIN_CONTRAST = 6.0
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Still:
    """One chosen frame, as JPEG bytes."""

    data: bytes
    width: int
    height: int
    #: Seconds from the clip's start.
    at: float
    score: float


@dataclass(frozen=True)
class _Scored:
    index: int
    at: float
    sharpness: float
    visibility: float
    thumb: np.ndarray

    @property
    def quality(self) -> float:
        return self.sharpness * self.visibility


def _grey(frame: av.VideoFrame) -> np.ndarray:
    height = max(2, round(frame.height * _ANALYSIS_WIDTH / frame.width))
    return frame.to_ndarray(format="gray", width=_ANALYSIS_WIDTH, height=height).astype(np.float32)


def _laplacian(image: np.ndarray) -> np.ndarray:
    return (
        image[1:-1, :-2] + image[1:-1, 2:] + image[:-2, 1:-1] + image[2:, 1:-1] - 4 * image[1:-1, 1:-1]
    )


def _score(grey: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(sharpness, visibility, a small normalised thumbnail for comparing frames)."""
    contrast = float(grey.std())
    edges = np.abs(_laplacian(grey))
    sharpness = float(edges.var())
    if contrast < _MIN_CONTRAST:
        visibility = 0.0
    else:
        h, w = edges.shape
        centre = edges[h // 5 : h - h // 5, w // 5 : w - w // 5]
        # Detail in the middle of the picture is where a subject usually stands; a frame whose only detail is
        # at its border (a pan away, an edge of a table) is a worse reference.
        centre_share = float(centre.mean() / (edges.mean() + 1e-6))
        mean = float(grey.mean())
        exposure = 1.0 - min(1.0, abs(mean - 128.0) / 128.0) ** 3
        visibility = min(contrast, 64.0) / 64.0 * min(centre_share, 1.5) * exposure
    thumb = np.asarray(Image.fromarray(grey.astype(np.uint8)).resize((24, 16), Image.Resampling.BILINEAR))
    thumb = thumb.astype(np.float32)
    thumb = (thumb - thumb.mean()) / (thumb.std() + 1.0)
    return sharpness, visibility, thumb


def _scan(path: Path) -> list[_Scored]:
    scored: list[_Scored] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            sharpness, visibility, thumb = _score(_grey(frame))
            scored.append(_Scored(index, float(frame.time or 0.0), sharpness, visibility, thumb))
    return scored


def _choose(scored: list[_Scored], count: int) -> list[_Scored]:
    if not scored:
        return []
    usable = [s for s in scored if s.visibility > 0] or scored
    best_quality = max(s.quality for s in usable) or 1.0
    span = max(1e-6, max(s.at for s in scored) - min(s.at for s in scored))
    chosen = [max(usable, key=lambda s: s.quality)]
    while len(chosen) < min(count, len(usable)):
        def merit(candidate: _Scored) -> float:
            if candidate in chosen:
                return -1.0
            looks = min(float(np.abs(candidate.thumb - c.thumb).mean()) for c in chosen)
            apart = min(abs(candidate.at - c.at) for c in chosen) / span
            return (candidate.quality / best_quality) * (0.2 + looks) * (0.2 + apart)

        chosen.append(max(usable, key=merit))
    return chosen


def _encode(path: Path, picks: list[_Scored], comment: str) -> list[Still]:
    wanted = {p.index: p for p in picks}
    found: dict[int, Still] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            pick = wanted.get(index)
            if pick is None:
                continue
            image = frame.to_image()
            buffer = io.BytesIO()
            options = {"comment": comment.encode()} if comment else {}
            image.save(buffer, format="JPEG", quality=JPEG_QUALITY, **options)
            found[index] = Still(buffer.getvalue(), image.width, image.height, pick.at, pick.quality)
            if len(found) == len(wanted):
                break
    return [found[p.index] for p in picks if p.index in found]


def pick_stills(path: Path, count: int = 3) -> list[Still]:
    """The `count` best distinct frames of a prepared clip, best first (fewer if the clip has fewer frames).

    The clip's own `title`/`comment` travel into each JPEG's comment, as they travel with the clip itself.
    """
    with av.open(str(path)) as container:
        meta = {k.lower(): v for k, v in container.metadata.items()}
    comment = " ".join(v for v in (meta.get("title", ""), meta.get("comment", "")) if v).strip()
    picks = _choose(_scan(path), count)
    return _encode(path, picks, comment)
