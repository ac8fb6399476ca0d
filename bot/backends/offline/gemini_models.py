"""The Gemini API's model routes, emulated for `soracast check`: `GET /v1beta/models/{model}` and
`GET /v1beta/models`.

A served model answers as Google's `Model` resource (`name: "models/…"`, `displayName`, …); any other is a 404 in
Google's envelope ("models/… is not found for API version v1beta"). The key is checked first, as for every route
of the emulator (a bad key: 400 `API_KEY_INVALID`). Which models are served is `app[SERVED_MODELS_KEY]`, a set a
test may narrow to play a key that is not allowed a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from bot.errors import APIRequestRejected

SERVED_MODELS_KEY = web.AppKey("gemini_served_models", set)


def _resource(model: str) -> dict[str, Any]:
    words = model.removeprefix("gemini-").replace("-", " ").title()
    return {
        "name": f"models/{model}",
        "baseModelId": model,
        "version": "001",
        "displayName": f"Gemini {words}",
        "description": "A video model served by soracast's emulator.",
        "supportedGenerationMethods": ["createInteraction"],
    }


async def get_model(request: web.Request) -> web.StreamResponse:
    name = request.match_info["model"].removeprefix("models/")
    if name not in request.app[SERVED_MODELS_KEY]:
        raise APIRequestRejected(
            f"models/{name} is not found for API version v1beta, or is not supported for getModel.", status=404
        )
    return web.json_response(_resource(name))


async def list_models(request: web.Request) -> web.StreamResponse:
    return web.json_response({"models": [_resource(m) for m in sorted(request.app[SERVED_MODELS_KEY])]})


def add_model_routes(app: web.Application, prefix: str, models: Iterable[str]) -> None:
    """The model routes on `app`, serving `models`."""
    app[SERVED_MODELS_KEY] = set(models)
    app.router.add_get(f"{prefix}/models", list_models, name="list_models")
    app.router.add_get(f"{prefix}/models/{{model}}", get_model, name="get_model")
