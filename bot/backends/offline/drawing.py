"""Drawing the offline videos: each scene's frames (animated background, characters' clip frames, caption),
encoded to an H.264 MP4 with a thumbnail and a spritesheet, in a worker thread."""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bot.backends.offline.clips import parse_size
from bot.backends.offline.job_table import Scene

_SPRITE_COLUMNS = 5
_SPRITE_FRAMES = 25
_SPRITE_TILE_WIDTH = 160
_CLIP_CACHE_ENTRIES = 4


# --- rendering ------------------------------------------------------------------------------------------


class SceneRenderer:
    """Draws scenes into MP4 + thumbnail + spritesheet. Runs in worker threads; caches decoded clip frames."""

    def __init__(self, *, fps: int) -> None:
        self.fps = fps
        # Decoded clips are big (a 4 s clip at 1792 px is ~100 MB of RGB), so only the latest few are kept.
        self._clip_cache: OrderedDict[tuple[str, int, int], list[np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    # Public entry points (called through asyncio.to_thread).

    def render(self, scene: Scene, size: str, folder: Path) -> None:
        """Render `scene` at `size` into `folder`/{video.mp4, thumbnail.jpg, spritesheet.jpg}."""
        width, height = parse_size(size)
        total = scene.total_seconds * self.fps
        self._encode(self._frames(scene, width, height), total, width, height, self.fps, folder)

    def render_stub(self, size: str, seconds: int, folder: Path) -> None:
        """A small solid-colour MP4 of the right duration (longest side 160 px, 2 fps)."""
        width, height = parse_size(size)
        scale = 160 / max(width, height)
        small_w, small_h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
        fps = 2
        frame = np.empty((small_h, small_w, 3), dtype=np.uint8)
        frame[:] = (40, 90, 160)
        frames = (frame for _ in range(seconds * fps))
        self._encode(frames, seconds * fps, small_w, small_h, fps, folder)

    # Encoding.

    def _encode(
        self, frames: Iterator[np.ndarray], total: int, width: int, height: int, fps: int, folder: Path
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        video_tmp = folder / "video.mp4.part"
        thumb_index = total // 2
        sprite_every = max(1, total // _SPRITE_FRAMES)
        thumbnail: Image.Image | None = None
        tiles: list[Image.Image] = []
        tile_w = min(_SPRITE_TILE_WIDTH, width)
        tile_h = max(2, round(height * tile_w / width))
        with av.open(str(video_tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # ultrafast keeps renders quick on small machines; quality is not the point offline.
            stream.options = {"preset": "ultrafast", "crf": "28"}
            stream.codec_context.time_base = Fraction(1, fps)
            for index, image in enumerate(frames):
                if index >= total:
                    break
                if index == thumb_index:
                    thumbnail = Image.fromarray(image)
                if index % sprite_every == 0 and len(tiles) < _SPRITE_FRAMES:
                    tiles.append(Image.fromarray(image).resize((tile_w, tile_h), Image.Resampling.BILINEAR))
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = index
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        if thumbnail is None:
            thumbnail = Image.new("RGB", (width, height))
        thumb_tmp = folder / "thumbnail.jpg.part"
        thumbnail.save(thumb_tmp, format="JPEG", quality=85)
        sprite_tmp = folder / "spritesheet.jpg.part"
        _spritesheet(tiles, tile_w, tile_h).save(sprite_tmp, format="JPEG", quality=80)
        # Publish the video last: its presence is what marks a render as done.
        thumb_tmp.replace(folder / "thumbnail.jpg")
        sprite_tmp.replace(folder / "spritesheet.jpg")
        video_tmp.replace(folder / "video.mp4")

    # Frames.

    def _frames(self, scene: Scene, width: int, height: int) -> Iterator[np.ndarray]:
        if scene.kind == "extend" and scene.source is not None:
            yield from self._frames(scene.source, width, height)
            offset = scene.source.total_seconds * self.fps
            yield from self._segment(scene, width, height, frame_offset=offset)
        elif scene.kind == "edit" and scene.source is not None:
            caption = _Caption(scene.prompt, width, height, label="edit")
            tint = np.array(_palette(scene.prompt)[1], dtype=np.uint16)
            for image in self._frames(scene.source, width, height):
                # A visible, cheap "edit": blend a quarter of the edit's colour in and re-caption.
                tinted = ((image.astype(np.uint16) * 3 + tint) // 4).astype(np.uint8)
                caption.apply(tinted)
                yield tinted
        else:
            yield from self._segment(scene, width, height, frame_offset=0)

    def _segment(self, scene: Scene, width: int, height: int, *, frame_offset: int) -> Iterator[np.ndarray]:
        fps = self.fps
        background = _Background(scene, width, height, fps)
        label = {"remix": "remix", "extend": "extended"}.get(scene.kind)
        caption = _Caption(scene.prompt, width, height, label=label)
        sprites = self._character_sprites(scene, width, height)
        count = len(sprites)
        for index in range(scene.seconds * fps):
            t = (index + frame_offset) / fps
            image = background.frame(index + frame_offset)
            for slot, (frames, (box_w, box_h)) in enumerate(sprites):
                clip_frame = frames[(index + frame_offset) % len(frames)]
                # Characters stand side by side and sway, so the composition visibly moves.
                centre = width * (slot + 1) / (count + 1)
                sway = math.sin(t * 1.7 + slot) * width * 0.04
                x = int(min(max(0, centre + sway - box_w / 2), width - box_w))
                bob = abs(math.sin(t * 3.1 + slot * 0.9)) * height * 0.04
                y = int(min(max(0, height * 0.52 - box_h / 2 - bob), height - box_h))
                image[y : y + box_h, x : x + box_w] = clip_frame
            caption.apply(image)
            yield image

    def _character_sprites(
        self, scene: Scene, width: int, height: int
    ) -> list[tuple[list[np.ndarray], tuple[int, int]]]:
        sprites = []
        count = len(scene.characters)
        for _character_id, clip in scene.characters:
            frames = self._clip_frames(clip, width, height, count)
            if frames:
                box_h, box_w = frames[0].shape[:2]
                sprites.append((frames, (box_w, box_h)))
        return sprites

    def _clip_frames(self, clip: str, width: int, height: int, count: int) -> list[np.ndarray]:
        """The clip's frames at the render's fps, scaled to fit a character's box (decoded once, cached)."""
        max_w = int(width * 0.9 / max(1, count))
        max_h = int(height * 0.45)
        key = (clip, max_w, max_h)
        with self._lock:
            cached = self._clip_cache.get(key)
            if cached is not None:
                self._clip_cache.move_to_end(key)
                return cached
        frames: list[np.ndarray] = []
        if Path(clip).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
            return self._still_frames(clip, max_w, max_h, key)
        try:
            with av.open(clip) as container:
                stream = container.streams.video[0]
                next_time = 0.0
                for frame in container.decode(stream):
                    when = float(frame.time or 0.0)
                    if when + 1e-6 < next_time:
                        continue  # thin the clip to the render's frame rate
                    next_time = when + 1 / self.fps
                    scale = min(max_w / frame.width, max_h / frame.height)
                    box_w = max(2, int(frame.width * scale) // 2 * 2)
                    box_h = max(2, int(frame.height * scale) // 2 * 2)
                    frames.append(frame.to_ndarray(format="rgb24", width=box_w, height=box_h))
                    if len(frames) >= 20 * self.fps:
                        break
        except (av.FFmpegError, OSError, IndexError):
            frames = []  # a clip that vanished since upload: draw the scene without it
        with self._lock:
            self._clip_cache[key] = frames
            while len(self._clip_cache) > _CLIP_CACHE_ENTRIES:
                self._clip_cache.popitem(last=False)
        return frames

    def _still_frames(self, path: str, max_w: int, max_h: int, key: tuple[str, int, int]) -> list[np.ndarray]:
        """A reference still as a one-frame sprite, scaled to fit the character's box."""
        try:
            with Image.open(path) as image:
                picture = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            return []
        scale = min(max_w / picture.width, max_h / picture.height)
        box = (max(2, int(picture.width * scale) // 2 * 2), max(2, int(picture.height * scale) // 2 * 2))
        frames = [np.asarray(picture.resize(box, Image.Resampling.BILINEAR))]
        with self._lock:
            self._clip_cache[key] = frames
            while len(self._clip_cache) > _CLIP_CACHE_ENTRIES:
                self._clip_cache.popitem(last=False)
        return frames


def _palette(text: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two colours derived from a text, so different prompts look different (and the same one the same)."""
    digest = hashlib.sha256(text.encode()).digest()
    first = (40 + digest[0] % 120, 40 + digest[1] % 120, 80 + digest[2] % 150)
    second = (60 + digest[3] % 160, 30 + digest[4] % 120, 40 + digest[5] % 120)
    return first, second


class _Background:
    """A diagonal-stripe gradient that scrolls sideways: one precomputed tile, one slice per frame."""

    def __init__(self, scene: Scene, width: int, height: int, fps: int) -> None:
        self.width = width
        self.period = max(32, width // 6)
        # Pixels per frame, so the motion speed is the same in seconds at any fps.
        self.speed = max(1.0, width / 8 / fps)
        tile_w = width + self.period
        base: np.ndarray | None = None
        if scene.image:
            with contextlib.suppress(OSError, ValueError):
                with Image.open(scene.image) as image:
                    base = np.asarray(image.convert("RGB").resize((width, height)), dtype=np.uint8)
        first, second = _palette(scene.prompt if scene.kind != "extend" else scene.prompt + "+")
        ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        xs = np.arange(tile_w, dtype=np.float32)[None, :, None]
        yy = np.arange(height, dtype=np.float32)[:, None, None]
        stripes = ((xs + yy) % self.period < self.period / 2).astype(np.float32)
        top = np.array(first, dtype=np.float32)
        bottom = np.array(second, dtype=np.float32)
        gradient = top * (1 - ys) + bottom * ys
        tile = gradient * (0.8 + 0.2 * stripes)
        if base is not None:
            # An input reference image shows through, with the stripes drifting over it.
            wide = np.concatenate([base, base[:, : self.period]], axis=1).astype(np.float32)
            tile = wide * 0.75 + tile * 0.25
        self.tile = np.clip(tile, 0, 255).astype(np.uint8)

    def frame(self, index: int) -> np.ndarray:
        offset = int(index * self.speed) % self.period
        return self.tile[:, offset : offset + self.width].copy()


class _Caption:
    """The prompt drawn once with Pillow's default font, then blended onto every frame's bottom band."""

    MAX_LINES = 4

    def __init__(self, prompt: str, width: int, height: int, *, label: str | None) -> None:
        font_size = max(10, min(48, height // 22))
        font = _font(font_size)
        text = " ".join(prompt.split())
        if label:
            text = f"[{label}] {text}"
        lines = _wrap(text, font, width * 0.94, self.MAX_LINES)
        line_h = int(font_size * 1.25)
        pad = max(4, font_size // 3)
        band_h = min(height, line_h * len(lines) + pad * 2)
        overlay = Image.new("RGBA", (width, band_h), (0, 0, 0, 150))
        draw = ImageDraw.Draw(overlay)
        for row, line in enumerate(lines):
            draw.text((pad * 2, pad + row * line_h), line, font=font, fill=(255, 255, 255, 255))
        rgba = np.asarray(overlay, dtype=np.uint16)
        alpha = rgba[:, :, 3:4]
        self.top = height - band_h
        self.keep = 255 - alpha
        self.add = rgba[:, :, :3] * alpha

    def apply(self, image: np.ndarray) -> None:
        band = image[self.top :]
        band[:] = ((band.astype(np.uint16) * self.keep + self.add) // 255).astype(np.uint8)


def _wrap(text: str, font: Any, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap by measured width; a last line that does not fit all the text ends with an ellipsis."""
    words = text.split(" ")
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        # Very long words are cut, so one URL cannot push the caption off the frame.
        while font.getlength(current) > max_width and len(current) > 1:
            cut = max(1, int(len(current) * max_width / font.getlength(current)))
            lines.append(current[:cut])
            current = current[cut:]
        if len(lines) >= max_lines:
            lines = lines[:max_lines]
            last = lines[-1]
            while last and font.getlength(last + " …") > max_width:
                last = last[:-1]
            lines[-1] = last.rstrip() + " …"
            return lines
    if current:
        lines.append(current)
    return lines or [""]


_FONTS: dict[int, Any] = {}


def _font(size: int) -> Any:
    font = _FONTS.get(size)
    if font is None:
        try:
            font = ImageFont.load_default(size=size)
        except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
            font = ImageFont.load_default()
        _FONTS[size] = font
    return font


def _spritesheet(tiles: list[Image.Image], tile_w: int, tile_h: int) -> Image.Image:
    columns = min(_SPRITE_COLUMNS, max(1, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / columns))
    sheet = Image.new("RGB", (tile_w * columns, tile_h * rows))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * tile_w, (index // columns) * tile_h))
    return sheet
