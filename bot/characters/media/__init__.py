"""Clips in and videos out: check, probe, cut, scale and shrink video files with PyAV (no ffmpeg binary).

What the rest of soracast uses:

* `check_upload` — a cheap verdict on an attachment from its name, type and size, before anything is downloaded;
* `probe` — read a file's container metadata and refuse what is too big, too long or not a readable video;
* `prepare_character_clip` — turn an ordinary phone clip into what the Videos API wants for a character:
  a 2–4 s H.264 MP4, 16:9 or 9:16, no audio, constant frame rate;
* `shrink_to_fit` — re-encode a finished video so it fits a chat platform's upload limit.

The stages live in their own modules — `probing` (check_upload, probe), `cut` (which seconds, upright, crop,
scale), `encode` (the character clip) and `output` (thumbnail, shrink_to_fit) — and this package gives the names
the rest of soracast uses. The public functions are async and run the blocking PyAV work in a worker thread
(`asyncio.to_thread`), so a long encode never stalls the bot's event loop.

Uploads are hostile input. Every cap (bytes, seconds, pixels) is checked from container metadata before a single
frame is decoded, decoding stops after a frame budget derived from those caps, and only the MP4/QuickTime and
Matroska/WebM demuxers are ever used: the container is recognised from its first bytes, never guessed by FFmpeg,
because a playlist or concat file named `.mp4` could otherwise make FFmpeg read other local files or URLs.
"""

from bot.characters.media.cut import Geometry, output_rate, plan_geometry
from bot.characters.media.encode import prepare_character_clip
from bot.characters.media.output import shrink_to_fit, thumbnail
from bot.characters.media.probing import ACCEPTED_EXTENSIONS, ClipInfo, ClipLimits, check_upload, probe

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "ClipInfo",
    "ClipLimits",
    "Geometry",
    "check_upload",
    "output_rate",
    "plan_geometry",
    "prepare_character_clip",
    "probe",
    "shrink_to_fit",
    "thumbnail",
]
