"""Small helpers around slack-sdk's Web API client."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code (`not_in_channel`, …), or the HTTP status when the answer was not JSON."""
    data = exc.response.data
    if isinstance(data, dict):
        return str(data.get("error") or "unknown_error")
    return f"http_{exc.response.status_code}"


def without_retries(client: AsyncWebClient) -> AsyncWebClient:
    """The same client (token, base URL, session) minus slack-sdk's automatic resend after a dropped connection,
    for calls that must not be repeated blindly: Slack may have done the work before the connection dropped."""
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        ssl=client.ssl,
        proxy=client.proxy,
        session=client.session,
        headers=dict(client.headers),
        retry_handlers=[],
    )
