"""A sample clip for `/demo`: a few seconds of a cartoon mascot waving on a beach, drawn with numpy, PyAV-encoded.

A newcomer has no MP4 of their own; this gives them one so they can see a whole round trip in a minute.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np

SAMPLE_WIDTH = 640
SAMPLE_HEIGHT = 360
SAMPLE_FPS = 24
SAMPLE_SECONDS = 4.0

_SKY_TOP = np.array([90, 160, 235], dtype=np.float32)
_SKY_LOW = np.array([190, 225, 250], dtype=np.float32)
_SAND = np.array([236, 208, 150], dtype=np.float32)
_SUN = np.array([255, 220, 90], dtype=np.float32)
_BODY = np.array([250, 140, 40], dtype=np.float32)
_WHITE = np.array([255, 255, 255], dtype=np.float32)
_INK = np.array([30, 30, 40], dtype=np.float32)


class _Canvas:
    """The static background plus helpers that paint shapes; each shape touches only its bounding box."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.background = self._background()

    def _background(self) -> np.ndarray:
        horizon = int(self.height * 0.7)
        t = (np.arange(self.height, dtype=np.float32)[:, None, None] / horizon).clip(0, 1)
        image = np.broadcast_to(_SKY_TOP * (1 - t) + _SKY_LOW * t, (self.height, self.width, 3)).copy()
        image[horizon:] = _SAND
        self.ellipse(image, self.width * 0.82, self.height * 0.18, self.height * 0.09, self.height * 0.09, _SUN)
        return image

    def _window(self, cx: float, cy: float, rx: float, ry: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
        x0, x1 = max(0, int(cx - rx) - 1), min(self.width, int(cx + rx) + 2)
        y0, y1 = max(0, int(cy - ry) - 1), min(self.height, int(cy + ry) + 2)
        ys, xs = np.ogrid[y0:y1, x0:x1]
        return slice(y0, y1), slice(x0, x1), (xs - cx) / rx, (ys - cy) / ry

    def ellipse(
        self,
        image: np.ndarray,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        color: np.ndarray | None,
        *,
        shade: float = 1.0,
    ) -> np.ndarray:
        """Fill an ellipse with `color` (or darken what is under it by `shade`); returns the window's mask."""
        rows, cols, dx, dy = self._window(cx, cy, rx, ry)
        mask = dx * dx + dy * dy <= 1.0
        region = image[rows, cols]
        if color is None:
            region[mask] *= shade
        else:
            region[mask] = color
        return mask

    def disc(self, image: np.ndarray, cx: float, cy: float, r: float, color: np.ndarray) -> None:
        self.ellipse(image, cx, cy, r, r, color)


def draw_mascot_frame(canvas: _Canvas, t: float) -> np.ndarray:
    """One RGB frame at time `t` (seconds): the mascot bounces and waves its right arm."""
    image = canvas.background.copy()
    unit = canvas.height / 360
    cx = canvas.width * 0.45
    cy = canvas.height * 0.55 - abs(math.sin(t * math.pi * 1.5)) * 25 * unit
    r = 70 * unit
    # A soft shadow on the sand makes the bounce readable.
    canvas.ellipse(image, cx, canvas.height * 0.83, r * 0.9, r * 0.18, None, shade=0.8)
    canvas.disc(image, cx, cy, r, _BODY)
    # The arm swings through ±35° around a shoulder on the body's right.
    angle = math.radians(-60 + 35 * math.sin(t * math.tau * 1.2))
    shoulder_x, shoulder_y = cx + r * 0.85, cy - r * 0.2
    for step in np.linspace(0, 1, 9):
        ax = shoulder_x + math.cos(angle) * r * 0.9 * step
        ay = shoulder_y + math.sin(angle) * r * 0.9 * step
        canvas.disc(image, ax, ay, 11 * unit, _BODY)
    hand_x = shoulder_x + math.cos(angle) * r * 0.95
    hand_y = shoulder_y + math.sin(angle) * r * 0.95
    canvas.disc(image, hand_x, hand_y, 16 * unit, _WHITE)
    # Eyes blink once a second for a few frames.
    blink = (t % 1.0) > 0.92
    for ex in (cx - r * 0.35, cx + r * 0.35):
        ey = cy - r * 0.25
        if blink:
            canvas.ellipse(image, ex, ey, 13 * unit, 2.5 * unit, _INK)
        else:
            canvas.disc(image, ex, ey, 14 * unit, _WHITE)
            canvas.disc(image, ex + 3 * unit, ey + 2 * unit, 6 * unit, _INK)
    _smile(image, cx, cy + r * 0.2, r)
    return image.clip(0, 255).astype(np.uint8)


def _smile(image: np.ndarray, cx: float, top: float, r: float) -> None:
    # The lower rim of one ellipse minus a slightly higher one: a crescent, cut flat at the top.
    x0, x1 = int(cx - r * 0.45) - 1, int(cx + r * 0.45) + 2
    y0, y1 = int(top), int(top + r * 0.35) + 2
    ys, xs = np.ogrid[y0:y1, x0:x1]
    outer = ((xs - cx) / (r * 0.45)) ** 2 + ((ys - (top + r * 0.05)) / (r * 0.25)) ** 2 <= 1.0
    inner = ((xs - cx) / (r * 0.45)) ** 2 + ((ys - (top - r * 0.03)) / (r * 0.22)) ** 2 <= 1.0
    image[y0:y1, x0:x1][outer & ~inner] = _INK


def make_sample_clip(
    dest: Path,
    *,
    seconds: float = SAMPLE_SECONDS,
    width: int = SAMPLE_WIDTH,
    height: int = SAMPLE_HEIGHT,
    fps: int = SAMPLE_FPS,
) -> Path:
    """Write an H.264 MP4 of the waving mascot to `dest` and return it (blocking: run it in a thread)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    canvas = _Canvas(width, height)
    frames = max(1, round(seconds * fps))
    with av.open(str(dest), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        # Small and quick to encode: it is a demo input, not a showcase.
        stream.options = {"crf": "26", "preset": "veryfast"}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(draw_mascot_frame(canvas, index / fps), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return dest
