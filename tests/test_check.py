"""`soracast check`, run as an operator runs it (the console script, in its own process), against the emulators
of fal, Gemini and an OpenAI-shape gateway: a good key passes, and a bad key, a wrong URL or a model the account
does not have each fail with one line naming what to fix. No video is ever made."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.backends.offline.fal_jobs import SERVED_KEY
from bot.backends.offline.fal_platform import PRICES_KEY
from bot.backends.offline.gemini_models import SERVED_MODELS_KEY
from tests.fixtures.fal import FAL_KEY, FalEmulator
from tests.fixtures.gemini import GEMINI_KEY, GeminiEmulator
from tests.fixtures.videos import VideosEmulator

O1 = "fal-ai/kling-video/o1/standard/reference-to-video"
VIDU = "fal-ai/vidu/q3/reference-to-video/mix"


@dataclass
class Run:
    code: int
    out: str
    err: str


async def soracast_check(tmp_path: Path, **env: str) -> Run:
    """`soracast check` with only these variables set (no `.env`, no key from the test's own environment)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SORACAST_", "SLACK_", "DISCORD_", "OPENAI_", "GEMINI_", "GOOGLE_", "FAL_"))
    }
    clean.update({"SORACAST_DATA_DIR": str(tmp_path / "data"), **env})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "check", cwd=tmp_path, env=clean,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def fal_env(emulator: FalEmulator, **extra: str) -> dict[str, str]:
    return {"FAL_KEY": FAL_KEY, "SORACAST_FAL_QUEUE_URL": emulator.origin, "SORACAST_FAL_MODELS": "kling-o1,vidu-q3",
            **extra}


def made_nothing(emulator: Any) -> bool:
    return not any(r.route in ("submit", "create_interaction", "create_video") for r in emulator.requests)


# --- fal ----------------------------------------------------------------------------------------------------


async def test_a_good_fal_key_passes_and_says_auto_picks_fal_and_why(tmp_path: Path, fal_emulator: FalEmulator) -> None:
    run = await soracast_check(tmp_path, **fal_env(fal_emulator))

    assert run.code == 0, run.err
    assert f"fal at {fal_emulator.origin}: ok" in run.out
    assert f"models confirmed: {O1}, {VIDU}" in run.out
    assert "New videos go to fal: SORACAST_BACKEND=auto and FAL_KEY is the first key set" in run.out
    assert f"default model: {O1} (the first of SORACAST_FAL_MODELS)" in run.out
    [pricing] = fal_emulator.requests.for_route("pricing")
    assert pricing.headers["Authorization"] == f"Key {FAL_KEY}" and made_nothing(fal_emulator)


async def test_a_bad_fal_key_fails_with_one_line_naming_fal_key(tmp_path: Path, fal_emulator: FalEmulator) -> None:
    run = await soracast_check(tmp_path, **fal_env(fal_emulator, FAL_KEY="not-the-key"))

    assert run.code == 1
    [problem] = run.err.strip().splitlines()
    assert problem.startswith("soracast check: fal: fal refused FAL_KEY (HTTP 401") and "valid key" in problem
    assert made_nothing(fal_emulator)


async def test_a_fal_model_the_account_does_not_have_is_named(tmp_path: Path, fal_emulator: FalEmulator) -> None:
    # This "account" is not served Vidu (the app's dicts are narrowed; the app itself is not changed).
    fal_emulator.app[SERVED_KEY].pop(VIDU)
    fal_emulator.app[PRICES_KEY].pop(VIDU)

    run = await soracast_check(tmp_path, **fal_env(fal_emulator))

    assert run.code == 1
    [problem] = run.err.strip().splitlines()
    assert f"fal does not serve {VIDU} (vidu-q3)" in problem and "SORACAST_FAL_MODELS" in problem
    assert f"models confirmed: {O1}" in run.out


async def test_a_fal_url_that_is_not_fal_is_called_a_wrong_url(
    tmp_path: Path, fal_emulator: FalEmulator, videos_emulator: VideosEmulator
) -> None:
    closed = fal_emulator.origin.rsplit(":", 1)[0] + ":9"  # the discard port: nothing listens there

    elsewhere = await soracast_check(tmp_path, **fal_env(fal_emulator, SORACAST_FAL_QUEUE_URL=videos_emulator.origin))
    nowhere = await soracast_check(tmp_path, **fal_env(fal_emulator, SORACAST_FAL_QUEUE_URL=closed))

    assert elsewhere.code == nowhere.code == 1
    assert f"fal: SORACAST_FAL_QUEUE_URL={videos_emulator.origin} answered HTTP 401 to fal's pricing" in elsewhere.err
    assert "not as fal would" in elsewhere.err
    assert f"soracast check: fal: could not reach SORACAST_FAL_QUEUE_URL={closed}" in nowhere.err


# --- Gemini -------------------------------------------------------------------------------------------------


def gemini_env(emulator: GeminiEmulator, **extra: str) -> dict[str, str]:
    return {"GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.origin, **extra}


async def test_gemini_is_checked_with_models_get_and_a_bad_key_or_model_is_named(
    tmp_path: Path, gemini_emulator: GeminiEmulator
) -> None:
    good = await soracast_check(tmp_path, **gemini_env(gemini_emulator))
    bad_key = await soracast_check(tmp_path, **gemini_env(gemini_emulator, GEMINI_API_KEY="wrong"))
    gemini_emulator.runner.app[SERVED_MODELS_KEY].discard("gemini-omni-1.2-flash")
    no_model = await soracast_check(tmp_path, **gemini_env(gemini_emulator))
    closed = gemini_emulator.origin.rsplit(":", 1)[0] + ":9"
    nowhere = await soracast_check(tmp_path, **gemini_env(gemini_emulator, GOOGLE_GEMINI_BASE_URL=closed))

    assert good.code == 0, good.err
    assert "models confirmed: gemini-omni-1.2-flash, gemini-omni-1.1-flash" in good.out
    assert "New videos go to Gemini: SORACAST_BACKEND=auto and GEMINI_API_KEY is the first key set" in good.out
    assert bad_key.code == 1 and "Google refused GEMINI_API_KEY (HTTP 400 INVALID_ARGUMENT" in bad_key.err
    assert no_model.code == 1
    assert "Gemini does not offer gemini-omni-1.2-flash to this key" in no_model.err
    assert nowhere.code == 1 and f"Gemini: could not reach GOOGLE_GEMINI_BASE_URL={closed}" in nowhere.err
    gets = [r for r in gemini_emulator.requests if r.route == "get_model"]
    assert gets and all(r.method == "GET" for r in gets) and made_nothing(gemini_emulator)


# --- an OpenAI-shape gateway, and everything at once ---------------------------------------------------------


async def test_a_gateway_is_checked_with_get_models_and_every_keyed_backend_is_checked(
    tmp_path: Path, fal_emulator: FalEmulator, start_videos_emulator: Any
) -> None:
    gateway: VideosEmulator = await start_videos_emulator(api_key="sk-gateway")
    env = {
        **fal_env(fal_emulator),
        "OPENAI_API_KEY": "sk-gateway",
        "OPENAI_BASE_URL": gateway.base_url,
        "SORACAST_ALLOWED_MODELS": "sora-2",
    }

    both = await soracast_check(tmp_path, **env)
    wrong = await soracast_check(tmp_path, **{**env, "OPENAI_API_KEY": "sk-wrong"})
    gateway.offline.allowed_models.remove("sora-2")
    missing = await soracast_check(tmp_path, **env)
    no_v1 = await soracast_check(tmp_path, **{**env, "OPENAI_BASE_URL": gateway.origin})

    assert both.code == 0, both.err
    assert f"OpenAI-shape gateway at {gateway.base_url}: ok" in both.out
    assert f"fal at {fal_emulator.origin}: ok" in both.out
    assert "New videos go to fal" in both.out and "also offered with --model: " in both.out and "sora-2" in both.out
    assert wrong.code == 1 and f"{gateway.base_url} refused OPENAI_API_KEY" in wrong.err
    assert missing.code == 1 and "does not list sora-2" in missing.err
    assert no_v1.code == 1 and f"OPENAI_BASE_URL={gateway.origin} has no model list" in no_v1.err
    assert [r.path for r in gateway.requests] == ["/v1/models"] * 3 + ["/models"] and made_nothing(gateway)


async def test_with_no_key_the_offline_renderer_is_checked_on_this_machine(tmp_path: Path) -> None:
    run = await soracast_check(tmp_path, SORACAST_OFFLINE_AS="fal", SORACAST_FAL_MODELS="kling-o3")

    assert run.code == 0, run.err
    assert "offline renderer (playing fal's rules on this machine)" in run.out
    assert "SORACAST_BACKEND=auto and no video API key is set" in run.out
    assert "default model: fal-ai/kling-video/o3/standard/reference-to-video" in run.out
