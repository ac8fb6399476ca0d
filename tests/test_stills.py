"""A character's stills: three frames of its clip that are sharp, different from each other, and show something."""

from __future__ import annotations

import io
import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageFilter

from bot.characters.stills import pick_stills

W, H, FPS = 320, 180, 12


def _scene(x: int, colour: tuple[int, int, int], *, blur: float = 0.0) -> np.ndarray:
    """A grey room with a textured block (the subject) at `x`; `blur` softens the whole picture."""
    image = np.full((H, W, 3), 110, dtype=np.uint8)
    block = np.zeros((90, 70, 3), dtype=np.uint8)
    block[:] = colour
    block[::6, :, :] = 255  # stripes: detail a sharp frame keeps and a blurred one loses
    image[45:135, x : x + 70] = block
    if blur:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(blur)))
    return image


def _clip(path: Path, frames: list[np.ndarray], title: str | None = None) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        if title:
            out.metadata["title"] = title
        stream = out.add_stream("libx264", rate=FPS, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _sharpness(picture: np.ndarray) -> float:
    grey = picture.mean(axis=2)
    return float(np.abs(np.diff(grey, axis=0)).mean())


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def test_three_stills_are_sharp_distinct_and_never_a_blank_frame(tmp_path: Path) -> None:
    black = np.zeros((H, W, 3), dtype=np.uint8)
    frames = (
        [black] * 8  # a fade in
        + [_scene(20, (200, 40, 40), blur=4)] * 4  # the subject on the left, out of focus
        + [_scene(20, (200, 40, 40))] * 4  # … then sharp
        + [_scene(125, (40, 180, 60))] * 4  # in the middle, sharp
        + [_scene(125, (40, 180, 60), blur=4)] * 4  # … then a shaky, blurred stretch
        + [_scene(230, (40, 60, 200))] * 4  # on the right, sharp
        + [black] * 8  # a fade out
    )
    clip = _clip(tmp_path / "character.mp4", frames)

    stills = pick_stills(clip, 3)

    assert len(stills) == 3
    pictures = [_decoded(s.data) for s in stills]
    assert all(p.std() > 20 for p in pictures), "a blank frame was chosen"
    # Each still comes from a sharp stretch: the subject's left edge at 20, 125 or 230 px, one of each.
    def left_edge(picture: np.ndarray) -> int:
        away_from_wall = np.abs(picture[90] - 110).sum(axis=1) > 120
        return int(np.argmax(away_from_wall))

    edges = sorted(left_edge(p) for p in pictures)
    assert all(abs(found - wanted) <= 6 for found, wanted in zip(edges, [20, 125, 230], strict=True)), edges
    blurred = _sharpness(_scene(125, (40, 180, 60), blur=4).astype(int))
    assert all(_sharpness(p) > 1.5 * blurred for p in pictures), [_sharpness(p) for p in pictures]
    times = sorted(s.at for s in stills)
    assert all(b - a > 0.25 for a, b in itertools.pairwise(times)), times
    assert [s.width for s in stills] == [W] * 3 and stills[0].score >= stills[-1].score


def test_a_clip_of_one_frame_gives_one_still_and_its_description_travels_with_it(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "one.mp4", [_scene(125, (200, 200, 40))], title="a person waving")

    stills = pick_stills(clip, 3)

    assert len(stills) == 1
    assert Image.open(io.BytesIO(stills[0].data)).info.get("comment") == b"a person waving"
