"""`soracast check` for fal: the key, the host and the models, proved by fal's platform pricing endpoint.

`GET https://api.fal.ai/v1/models/pricing?endpoint_id=…` needs a valid key (fal's platform API docs: "Users
must provide a valid API key"), names each endpoint it knows with its price, and makes nothing: no video, no
charge. A 401/403 is a refused key; an endpoint it does not price is a model fal does not serve this account; an
answer that is not fal's (an HTML page, a refused connection) is a wrong `SORACAST_FAL_QUEUE_URL`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from bot.backends.base import BackendCheck
from bot.backends.fal.errors import read_error
from bot.backends.fal.models import FalModel
from bot.backends.fal.queue import PLATFORM_URL

PRICING = f"{PLATFORM_URL}/v1/models/pricing"


async def check_fal(http: httpx.AsyncClient, models: Sequence[FalModel], fal_url: str | None) -> BackendCheck:
    """What fal says of the key and of `models`, through `http` (soracast's fal client: key, host)."""
    report = BackendCheck(endpoint=fal_url or "https://queue.fal.run (and api.fal.ai for this check)")
    ids = [m.id for m in models]
    where = f"SORACAST_FAL_QUEUE_URL={fal_url}" if fal_url else "fal's hosts"
    try:
        response = await http.get(PRICING, params=[("endpoint_id", i) for i in ids])
        if response.status_code == 404 and _is_fal(response) and len(ids) > 1:
            # One unknown endpoint fails the whole question: ask model by model to say which.
            await _one_by_one(http, models, report)
            return report
    except httpx.HTTPError as exc:
        report.problems.append(f"could not reach {where} ({type(exc).__name__}); check the URL and the network.")
        return report
    _read(response, models, report, where)
    return report


async def _one_by_one(http: httpx.AsyncClient, models: Sequence[FalModel], report: BackendCheck) -> None:
    for model in models:
        answer = await http.get(PRICING, params={"endpoint_id": model.id})
        _read(answer, [model], report, "fal")


def _read(response: httpx.Response, models: Sequence[FalModel], report: BackendCheck, where: str) -> None:
    error = read_error(response) if response.status_code >= 400 else None
    if not _is_fal(response):
        report.problems.append(
            f"{where} answered HTTP {response.status_code} to fal's pricing endpoint, not as fal would "
            "(is the URL fal's, or `soracast emulate --api fal`'s?)."
        )
        return
    if error is not None and response.status_code in (401, 403):
        report.problems.append(
            f"fal refused FAL_KEY (HTTP {response.status_code}: {error.message or 'unauthorized'}); set a valid key."
        )
        return
    if error is not None and response.status_code == 404:
        for model in models:
            report.problems.append(
                f"fal does not serve {model.id} ({model.caps.aliases[0] if model.caps.aliases else 'configured'}) "
                f"for this key: {error.message or 'not found'}; remove it from SORACAST_FAL_MODELS."
            )
        return
    if error is not None:
        report.problems.append(f"fal answered HTTP {response.status_code}: {error.message or 'an error'}.")
        return
    quoted = {str(p.get("endpoint_id")): p for p in _prices(response.json())}
    for model in models:
        price = quoted.get(model.id)
        if price is None:
            report.problems.append(
                f"fal does not price {model.id} for this key (not served to it); remove it from SORACAST_FAL_MODELS."
            )
            continue
        report.models_available.append(model.id)
        amount, currency, unit = price.get("unit_price"), price.get("currency", "USD"), price.get("unit", "unit")
        report.notes.append(f"{model.id}: fal quotes {amount} {currency} per {unit}")


def _prices(body: Any) -> list[dict[str, Any]]:
    items = body.get("prices", []) if isinstance(body, dict) else body
    return [p for p in items if isinstance(p, dict)] if isinstance(items, list) else []


def _is_fal(response: httpx.Response) -> bool:
    """Whether the answer is in fal's shape (`{"detail": …}` for an error, `{"prices": …}` for prices), not a page
    or another API's error that some other server sent."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(body, dict) and ("detail" in body if response.status_code >= 400 else "prices" in body)
