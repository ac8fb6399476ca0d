"""`soracast check` for Gemini: the key, the endpoint and each configured model, by `models.get`.

`GET /v1beta/models/{model}` (google-genai's `client.aio.models.get`) is free, needs the key, and answers 404
for a model the key cannot use: it proves all three without making a video. Google answers a bad key with a 400
whose reason is `API_KEY_INVALID` (a missing one with a 403), an unknown model with a 404.
"""

from __future__ import annotations

from collections.abc import Sequence

from google import genai
from google.genai import errors as genai_errors

from bot.backends.base import BackendCheck, ModelCapabilities

GOOGLE = "https://generativelanguage.googleapis.com"


async def check_gemini(
    client: genai.Client, models: Sequence[ModelCapabilities], base_url: str | None
) -> BackendCheck:
    """What the Gemini API says of the key and of each of `models`."""
    report = BackendCheck(endpoint=base_url or GOOGLE)
    where = f"GOOGLE_GEMINI_BASE_URL={base_url}" if base_url else GOOGLE
    for caps in models:
        try:
            found = await client.aio.models.get(model=caps.model)
        except genai_errors.APIError as exc:
            if _key_refused(exc):
                report.problems.append(
                    f"Google refused GEMINI_API_KEY (HTTP {exc.code} {exc.status or ''}: {exc.message or ''}); "
                    "set a valid key of a project with billing enabled and the Gemini API allowed."
                )
                return report
            if exc.code == 404 and exc.status == "NOT_FOUND":
                report.problems.append(
                    f"Gemini does not offer {caps.model} to this key ({exc.message}); remove it from "
                    "SORACAST_GEMINI_MODELS."
                )
                continue
            if not exc.status:
                report.problems.append(
                    f"{where} answered HTTP {exc.code}, not as the Gemini API would (is the URL right?)."
                )
                return report
            report.problems.append(f"Gemini answered HTTP {exc.code} {exc.status} for {caps.model}: {exc.message}")
        except Exception as exc:
            report.problems.append(
                f"could not reach {where} ({type(exc).__name__}); check the URL and the network."
            )
            return report
        else:
            report.models_available.append(caps.model)
            if found.display_name:
                report.notes.append(f"{caps.model}: {found.display_name}")
    return report


def _key_refused(exc: genai_errors.APIError) -> bool:
    text = f"{exc.details}"
    return exc.code in (401, 403) or (exc.code == 400 and ("API_KEY_INVALID" in text or "API key not valid" in text))
