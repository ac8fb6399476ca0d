"""One deployment installed by many Slack workspaces: "Add to Slack" through bolt's OAuth flow against the
fake Slack (oauth.v2.access included), installations kept sealed in soracast's database, every request and
every later delivery made with its own workspace's token, and workspaces leaving (app_uninstalled,
tokens_revoked) without touching any other."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.app import build_slack_adapter, run_socket_mode, run_web
from adapters.slack.installations import DatabaseStateStore
from adapters.slack.oauth import BOT_SCOPES, NOT_INSTALLED
from adapters.slack.workspaces import Workspace
from bot.app import Soracast, build_app
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.models import Actor, GenerationStatus, Platform, Scope, utcnow
from bot.sealing import SecretBox, Unsealable, new_key
from tests.fakes.slack_api import FakeSlackAPI
from tests.fixtures.line import WITHIN, finish, sent, slow_offline_api
from tests.fixtures.slack import (
    SECRET_KEY,
    STATE_SECRET,
    SlackHarness,
    oauth_settings,
    start_harness,
    stop_harness,
)
from tests.fixtures.videos import fast_offline_api

ONE, TWO = "T0ONE", "T0TWO"
CHANNEL_OF = {ONE: "C0ONEGENERAL", TWO: "C0TWOGENERAL"}
COOKIE = "slack-app-oauth-state"

class Deployment:
    """soracast web processes in OAuth mode sharing one database and one video service (each process its own
    core, adapter and port), against the one fake Slack."""

    def __init__(self, root: Path, api: FakeSlackAPI, videos: OfflineVideosAPI) -> None:
        self.root, self.api, self.videos = root, api, videos
        self.started: list[tuple[SlackHarness, Soracast]] = []

    async def start(self, **overrides: object) -> SlackHarness:
        settings = oauth_settings(self.root / "data", self.api, **overrides)
        core = await build_app(settings, videos=self.videos)
        harness = await start_harness(self.api, settings, core)
        self.started.append((harness, core))
        return harness

    async def aclose(self) -> None:
        for harness, core in reversed(self.started):
            await stop_harness(harness)
            await core.aclose()
        await self.videos.aclose()


@pytest.fixture
async def deployment(tmp_path: Path, slack_api: FakeSlackAPI) -> AsyncIterator[Deployment]:
    """Processes on a video service whose jobs finish in milliseconds."""
    found = Deployment(tmp_path, slack_api, fast_offline_api(tmp_path / "videos"))
    yield found
    await found.aclose()


@pytest.fixture
async def slow_deployment(tmp_path: Path, slack_api: FakeSlackAPI) -> AsyncIterator[Deployment]:
    """Processes on a video service whose jobs finish when a test says (`tests.fixtures.line.finish`)."""
    found = Deployment(tmp_path, slack_api, slow_offline_api(tmp_path / "videos"))
    yield found
    await found.aclose()


async def install(slack: SlackHarness, team_id: str | None, *, finish_on: SlackHarness | None = None, **grant: object):
    """What "Add to Slack" does in a browser: /slack/install, Slack's consent (the fake's grant), then the
    redirect back with code and state — optionally to another process than the one that started it."""
    started = await slack.get("/slack/install")
    assert started.status == 302
    location = urlsplit(started.headers["Location"])
    state = parse_qs(location.query)["state"][0]
    code = f"code-{team_id or grant.get('enterprise_id')}-{state[:6]}"
    issued = slack.api.grant(code, team_id, **grant)  # type: ignore[arg-type]
    back = finish_on or slack
    answer = await redirect_back(back, code, state)
    assert answer.status == 200, await answer.text()
    return issued


async def redirect_back(slack: SlackHarness, code: str, state: str, cookie: str | None = None):
    """The browser coming back from Slack's consent screen, with the state cookie set by /slack/install."""
    headers = {"Cookie": f"{COOKIE}={cookie if cookie is not None else state}"} if cookie != "" else {}
    return await slack.get(f"/slack/oauth_redirect?code={code}&state={state}", headers=headers)


def calls_for_channel(api: FakeSlackAPI, channel: str) -> list[str | None]:
    """The teams whose tokens made the Web API calls about a channel (posts, edits, completed uploads)."""
    found = []
    for call in api.calls:
        if channel in (call.data.get("channel"), call.data.get("channel_id")):
            found.append(call.team)
    return found


# --- installing -------------------------------------------------------------------------------------------------


async def test_add_to_slack_redirects_with_a_state_then_stores_the_installation_sealed(
    deployment: Deployment, slack_api: FakeSlackAPI, tmp_path: Path
) -> None:
    slack = await deployment.start()
    started = await slack.get("/slack/install")
    assert started.status == 302
    location = urlsplit(started.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://slack.com/oauth/v2/authorize"
    query = parse_qs(location.query)
    assert query["client_id"] == [slack_api.client_id]
    assert query["scope"] == [",".join(BOT_SCOPES)]
    state = query["state"][0]
    assert f"{COOKIE}={state}" in started.headers["Set-Cookie"]

    issued = slack_api.grant("the-code", ONE)
    back = await redirect_back(slack, "the-code", state)
    assert back.status == 200

    [exchange] = slack_api.calls_to("oauth.v2.access")
    assert exchange.data["code"] == "the-code" and exchange.headers["Authorization"].startswith("Basic ")
    assert slack_api.calls_to("auth.test")[-1].team == ONE  # bolt checks the new token before saving it
    stored = await slack.core.storage.find_installation(Platform.SLACK, "", ONE)
    assert stored is not None and issued.token not in stored.sealed
    assert json.loads(SecretBox(SECRET_KEY).open(stored.sealed))["bot_token"] == issued.token
    # Nowhere in the database file is the token in the clear.
    for path in (tmp_path / "data").glob("soracast.db*"):
        assert issued.token.encode() not in path.read_bytes()

    # The state was taken: the same redirect again (a replay) is refused and exchanges nothing.
    replay = await redirect_back(slack, "the-code", state)
    assert replay.status == 401 and len(slack_api.calls_to("oauth.v2.access")) == 1


async def test_the_state_check_refuses_a_missing_cookie_a_forged_state_and_a_stale_one(
    deployment: Deployment, slack_api: FakeSlackAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slack = await deployment.start()
    state = parse_qs(urlsplit((await slack.get("/slack/install")).headers["Location"]).query)["state"][0]
    slack_api.grant("code-1", ONE)

    no_cookie = await redirect_back(slack, "code-1", state, cookie="")
    assert no_cookie.status == 400  # another browser than the one that started the install
    forged = state.split(".")[0] + ".bm90LXNpZ25lZA"
    wrong = await redirect_back(slack, "code-1", forged)
    assert wrong.status == 401
    assert slack_api.calls_to("oauth.v2.access") == []
    assert await slack.core.storage.find_installation(Platform.SLACK, "", ONE) is None
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused an install")]
    assert refusals == [
        "refused an install at /slack/oauth_redirect: 400 'invalid_browser'",
        "refused an install at /slack/oauth_redirect: 401 'invalid_state'",
    ]

    # A state lives ten minutes in the database; an expired one is refused even with its cookie.
    store = DatabaseStateStore(slack.core.storage, STATE_SECRET, expiration_seconds=-1)
    stale = await store.async_issue()
    assert not await store.async_consume(stale)
    fresh = DatabaseStateStore(slack.core.storage, STATE_SECRET, expiration_seconds=600)
    issued = await fresh.async_issue()
    assert not await DatabaseStateStore(slack.core.storage, "another-secret", 600).async_consume(issued)
    assert await fresh.async_consume(issued) and not await fresh.async_consume(issued)


async def test_an_install_started_on_one_process_finishes_on_another_and_both_serve_it(
    deployment: Deployment, slack_api: FakeSlackAPI
) -> None:
    first, second = await deployment.start(), await deployment.start()
    issued = await install(first, ONE, finish_on=second)
    for process in (first, second):
        team = process.as_team(ONE)
        assert (await team.command("/character", "list", channel=CHANNEL_OF[ONE])).status == 200
        await team.settle()
    answers = [c for c in slack_api.calls_to("response")]
    assert len(answers) == 2
    assert {c.team for c in slack_api.calls if c.method not in ("response", "oauth.v2.access")} == {ONE}
    assert issued.token in slack_api.teams_by_token


# --- each workspace with its own token --------------------------------------------------------------------------


async def test_two_workspaces_each_request_and_each_delivery_use_their_own_token(
    deployment: Deployment, slack_api: FakeSlackAPI
) -> None:
    slack = await deployment.start()
    await install(slack, ONE)
    await install(slack, TWO)
    made = {}
    for team_id in (ONE, TWO):
        team = slack.as_team(team_id)
        assert (await team.command("/sora", f"a lighthouse for {team_id}", channel=CHANNEL_OF[team_id])).status == 200
        await team.settle()
        [generation] = await slack.core.generations.recent(team.scope)
        made[team_id] = await slack.core.generations.wait_finished(generation.id, WITHIN)
        assert made[team_id].status is GenerationStatus.COMPLETED and made[team_id].delivered_at is not None

    for team_id, generation in made.items():
        teams = calls_for_channel(slack_api, CHANNEL_OF[team_id])
        # The progress message, its edits and the completed upload: all with this workspace's token only.
        assert len(teams) >= 3 and set(teams) == {team_id}
        [ticket] = [c for c in slack_api.calls_to("files.getUploadURLExternal")
                    if c.data.get("filename") == f"soracast-{generation.id}.mp4"]
        assert ticket.team == team_id
        assert slack_api.posts_of(f"soracast-{generation.id}.mp4")[0].channel == CHANNEL_OF[team_id]
    assert all(c.team is not None for c in slack_api.calls if c.method not in ("response", "oauth.v2.access", "upload"))


async def test_a_job_is_delivered_with_its_workspaces_token_by_whichever_process_takes_it(
    slow_deployment: Deployment, slack_api: FakeSlackAPI
) -> None:
    asked = await slow_deployment.start()
    await install(asked, ONE)
    await install(asked, TWO)
    team = asked.as_team(TWO)
    await team.command("/sora", "a quiet harbour", channel=CHANNEL_OF[TWO])
    await team.settle()
    [generation] = await asked.core.generations.recent(team.scope)
    await sent(asked.core, generation.id)
    await asked.core.generations.aclose()  # this process stops serving; its lease is handed over at once

    other = await slow_deployment.start()  # another process takes the job up, and posts it once it is done
    await other.core.generations.resume(Platform.SLACK)
    done = await finish(other.core, slow_deployment.videos, generation.id)
    assert done.status is GenerationStatus.COMPLETED and done.delivered_at is not None
    assert slack_api.posts_of(f"soracast-{generation.id}.mp4")[0].channel == CHANNEL_OF[TWO]
    assert set(calls_for_channel(slack_api, CHANNEL_OF[TWO])) == {TWO}


async def test_a_rotating_token_is_renewed_before_use_and_the_new_one_kept(
    deployment: Deployment, slack_api: FakeSlackAPI
) -> None:
    slack = await deployment.start()
    issued = await install(slack, ONE, rotating=True)
    # Make it due: it expires within bolt's two-hour renewal window.
    installation = await slack.adapter.oauth.store.record("", ONE)  # type: ignore[union-attr]
    assert installation is not None and installation.bot_refresh_token == issued.refresh_token
    await slack.adapter.oauth.store.save_record(  # type: ignore[union-attr]
        installation.model_copy(update={"bot_token_expires_at": int(utcnow().timestamp()) + 60})
    )
    team = slack.as_team(ONE)
    assert (await team.command("/character", "list", channel=CHANNEL_OF[ONE])).status == 200
    await team.settle()

    [renewal] = [c for c in slack_api.calls_to("oauth.v2.access") if c.data.get("grant_type") == "refresh_token"]
    assert renewal.data["refresh_token"] == issued.refresh_token
    renewed = await slack.adapter.oauth.store.record("", ONE)  # type: ignore[union-attr]
    assert renewed is not None and renewed.bot_token not in (None, issued.token)
    assert issued.token in slack_api.revoked  # the old one no longer works at Slack
    assert slack_api.calls_to("auth.test")[-1].headers["Authorization"] == f"Bearer {renewed.bot_token}"
    assert slack_api.calls_to("response")[-1].data["response_type"] == "ephemeral"  # and the command was answered

    # Outside any request (a delivery, say) a token that is due is renewed the same way before it is used.
    other = await install(slack, TWO, rotating=True)
    record = await slack.adapter.oauth.store.record("", TWO)  # type: ignore[union-attr]
    assert record is not None
    await slack.adapter.oauth.store.save_record(  # type: ignore[union-attr]
        record.model_copy(update={"bot_token_expires_at": int(utcnow().timestamp()) + 60})
    )
    client = await slack.adapter.services.clients.client(Workspace(team_id=TWO))
    assert client.token not in (None, other.token) and other.token in slack_api.revoked
    stored = await slack.adapter.oauth.store.record("", TWO)  # type: ignore[union-attr]
    assert stored is not None and stored.bot_token == client.token


# --- leaving ----------------------------------------------------------------------------------------------------


async def test_uninstalling_deletes_that_workspaces_tokens_and_ends_its_jobs_quietly_and_no_one_elses(
    slow_deployment: Deployment, slack_api: FakeSlackAPI, make_mp4, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slack = await slow_deployment.start(max_in_flight=1)
    await install(slack, ONE)
    await install(slack, TWO)
    one, two = slack.as_team(ONE), slack.as_team(TWO)
    for team in (one, two):
        await slack.core.registry.register(
            team.scope, Actor(id="U0ALICE"), "mascot", make_mp4("m.mp4", seconds=3.0), rights_confirmed=True
        )
    await one.command("/sora", "@mascot rendering", channel=CHANNEL_OF[ONE])
    await one.settle()
    await one.command("/sora", "@mascot waiting", channel=CHANNEL_OF[ONE])
    await one.settle()
    rendering, waiting = sorted(await slack.core.generations.recent(one.scope), key=lambda g: g.created_at)
    await sent(slack.core, rendering.id)

    slack_api.uninstall(ONE)  # Slack revokes the tokens and tells the app
    assert (await one.event({"type": "app_uninstalled"})).status == 200
    await one.settle()
    before = len(slack_api.calls)

    assert await slack.core.storage.find_installation(Platform.SLACK, "", ONE) is None
    assert await slack.core.storage.find_installation(Platform.SLACK, "", TWO) is not None
    retired = await slack.core.storage.get_retired_scope(one.scope)
    assert retired is not None and retired.reason == "app_uninstalled"
    # The waiting video left the line; the one being made ends unposted once done, with one log line.
    assert (await slack.core.generations.wait_finished(waiting.id, WITHIN)).status is GenerationStatus.CANCELLED
    done = await finish(slack.core, slow_deployment.videos, rendering.id)
    assert done.delivered_at is not None
    assert f"generation {rendering.id} of slack:{ONE} ends without being posted" in caplog.text
    assert [c for c in slack_api.calls[before:] if c.team == ONE or CHANNEL_OF[ONE] in json.dumps(c.data)] == []

    # The other workspace goes on as before, with its own token.
    await two.command("/sora", "@mascot after the other left", channel=CHANNEL_OF[TWO])
    await two.settle()
    [theirs] = [g for g in await slack.core.generations.recent(two.scope)]
    await finish(slack.core, slow_deployment.videos, theirs.id)
    assert set(calls_for_channel(slack_api, CHANNEL_OF[TWO])) == {TWO}
    assert slack_api.posts_of(f"soracast-{theirs.id}.mp4")

    # Its characters and videos are kept for the retention period, then swept — the other's stay.
    assert len(await slack.core.registry.list(one.scope)) == 1
    assert await slack.core.departures.sweep(now=retired.purge_after - timedelta(seconds=1)) == []
    [purged] = await slack.core.departures.sweep(now=retired.purge_after)
    assert purged.scope == one.scope and purged.characters == 1
    assert await slack.core.registry.list(one.scope) == [] and await slack.core.generations.recent(one.scope) == []
    assert len(await slack.core.registry.list(two.scope)) == 1
    assert len(await slack.core.generations.recent(two.scope)) == 1

    # A command that still reaches soracast from the removed workspace is told it is not installed.
    await one.command("/character", "list", channel=CHANNEL_OF[ONE])
    assert slack_api.calls_to("response")[-1].data["text"] == NOT_INSTALLED


async def test_revoked_bot_tokens_retire_the_workspace_and_installing_again_brings_it_back(
    deployment: Deployment, slack_api: FakeSlackAPI, make_mp4
) -> None:
    slack = await deployment.start()
    await install(slack, ONE)
    await install(slack, TWO)
    one = slack.as_team(ONE)
    await slack.core.registry.register(
        one.scope, Actor(id="U0ALICE"), "mascot", make_mp4("m.mp4", seconds=3.0), rights_confirmed=True
    )

    slack_api.uninstall(ONE)
    revoked = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [slack_api.bot_user_id]}}
    assert (await one.event(revoked)).status == 200
    assert await slack.core.storage.find_installation(Platform.SLACK, "", ONE) is None
    assert (await slack.core.storage.get_retired_scope(one.scope)).reason == "tokens_revoked"  # type: ignore[union-attr]
    assert await slack.core.storage.get_retired_scope(slack.as_team(TWO).scope) is None
    # A delivery with a stale cached client is refused by Slack and recognised as the workspace being gone.
    clients = slack.adapter.services.clients
    with pytest.raises(Exception) as gone:
        await clients.client(Workspace(team_id=ONE))
    assert type(gone.value).__name__ == "DestinationGone"

    await install(slack, ONE)  # an admin adds soracast again before the sweep
    assert await slack.core.storage.get_retired_scope(one.scope) is None
    assert [c.handle for c in await slack.core.registry.list(one.scope)] == ["mascot"]
    await one.command("/character", "list", channel=CHANNEL_OF[ONE])
    await one.settle()
    assert "mascot" in slack_api.calls_to("response")[-1].data["text"]


async def test_an_organisation_wide_install_serves_each_workspace_of_it_and_leaves_with_all_of_them(
    deployment: Deployment, slack_api: FakeSlackAPI, make_mp4
) -> None:
    slack = await deployment.start()
    await install(slack, ONE)  # a workspace outside the organisation
    issued = await install(slack, None, enterprise_id="E0GRID", org_install=True)
    stored = await slack.core.storage.find_installation(Platform.SLACK, "E0GRID", "")
    assert stored is not None and issued.token not in stored.sealed

    in_org = [slack.as_team(team, enterprise_id="E0GRID", org_install=True) for team in ("T0GA", "T0GB")]
    for team in in_org:
        await team.command("/sora", f"a parade in {team.team_id}", channel=f"C0{team.team_id}")
        await team.settle()
        [generation] = await slack.core.generations.recent(team.scope)  # its videos belong to its own workspace
        assert team.scope == Scope(platform=Platform.SLACK, id=team.team_id)
        assert generation.target.extra.items() >= {"enterprise_id": "E0GRID", "org_install": "1"}.items()
        await slack.core.generations.wait_finished(generation.id, WITHIN)
        assert set(calls_for_channel(slack_api, f"C0{team.team_id}")) == {"E0GRID"}  # the organisation's token
    assert await slack.core.storage.org_workspaces(Platform.SLACK, "E0GRID") == ["T0GA", "T0GB"]

    # An org admin takes soracast away from one workspace of the organisation: only that one is retired.
    revoked = await in_org[0].event({"type": "team_access_revoked", "team_ids": ["T0GB"]})
    assert revoked.status == 200
    assert await slack.core.storage.get_retired_scope(in_org[1].scope) is not None
    assert await slack.core.storage.get_retired_scope(in_org[0].scope) is None
    assert await slack.core.storage.find_installation(Platform.SLACK, "E0GRID", "") is not None

    slack_api.uninstall("E0GRID")
    assert (await in_org[0].event({"type": "app_uninstalled"})).status == 200
    assert await slack.core.storage.find_installation(Platform.SLACK, "E0GRID", "") is None
    for team in in_org:
        assert await slack.core.storage.get_retired_scope(team.scope) is not None
    assert await slack.core.storage.find_installation(Platform.SLACK, "", ONE) is not None
    assert await slack.core.storage.get_retired_scope(slack.as_team(ONE).scope) is None


# --- configuration -------------------------------------------------------------------------------------------


def test_the_manifest_declares_the_oauth_setup() -> None:
    manifest = (Path(__file__).parents[1] / "adapters" / "slack" / "manifest.yml").read_text(encoding="utf-8")
    assert "/slack/oauth_redirect" in manifest
    for event in ("app_mention", "app_uninstalled", "tokens_revoked"):
        assert f"      - {event}\n" in manifest
    bot = manifest.split("bot:\n", 1)[1].split("settings:", 1)[0]
    assert [line.split("#")[0].strip(" -") for line in bot.splitlines() if line.strip().startswith("- ")] == list(
        BOT_SCOPES
    )


async def test_oauth_mode_refuses_to_start_without_what_it_needs_naming_each_variable(
    tmp_path: Path, slack_api: FakeSlackAPI
) -> None:
    base = oauth_settings(tmp_path / "data", slack_api)
    for missing, variable in (
        ({"secret_key": None}, "SORACAST_SECRET_KEY"),
        ({"slack_state_secret": None}, "SLACK_STATE_SECRET"),
        ({"slack_client_secret": None}, "SLACK_CLIENT_SECRET"),
        ({"slack_bot_token": "xoxb-also-set"}, "SLACK_BOT_TOKEN"),
    ):
        with pytest.raises(ConfigError) as refused:
            await run_web(base.model_copy(update=missing | _secrets(missing)))
        assert variable in refused.value.user_text()
    assert not (tmp_path / "data" / "soracast.db").exists()  # refused before anything was opened
    with pytest.raises(ConfigError) as socket_mode:
        await run_socket_mode(base.model_copy(update={"slack_app_token": _secret("xapp-1-test")}))
    assert "SLACK_CLIENT_ID" in socket_mode.value.user_text()


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)


def _secrets(values: dict[str, object]) -> dict[str, object]:
    return {k: _secret(v) for k, v in values.items() if isinstance(v, str)}


def test_a_malformed_secret_key_is_named_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORACAST_SECRET_KEY", f"{new_key()},not-a-fernet-key-at-all")
    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=None)
    text = refused.value.user_text()
    assert text.startswith("SORACAST_SECRET_KEY") and "key 2 of 2" in text and "not-a-fernet" not in text


async def test_keys_rotate_the_new_key_first_and_rekey_seals_everything_again(
    deployment: Deployment, slack_api: FakeSlackAPI, tmp_path: Path
) -> None:
    from bot.cli.operator import rekey

    slack = await deployment.start()
    issued = await install(slack, ONE)
    newer = new_key()
    rotated: Settings = slack.settings.model_copy(update={"secret_key": _secret(f"{newer},{SECRET_KEY}")})
    # With the new key first and the old one after, what is stored still opens.
    assert json.loads(SecretBox(f"{newer},{SECRET_KEY}").open(
        (await slack.core.storage.find_installation(Platform.SLACK, "", ONE)).sealed  # type: ignore[union-attr]
    ))["bot_token"] == issued.token
    assert await rekey(rotated) == (1, [])
    sealed = (await slack.core.storage.find_installation(Platform.SLACK, "", ONE)).sealed  # type: ignore[union-attr]
    assert json.loads(SecretBox(newer).open(sealed))["bot_token"] == issued.token  # the old key can go now
    with pytest.raises(Unsealable):
        SecretBox(SECRET_KEY).open(sealed)

    # A process whose keys open nothing stored treats that as the operator's mistake, not as an uninstall:
    # requests are told to reinstall (bolt finds nothing), jobs are retried rather than dropped.
    wrong = oauth_settings(tmp_path / "data", slack_api, secret_key=new_key())
    core = await build_app(wrong, videos=deployment.videos)
    try:
        adapter = build_slack_adapter(core, wrong, client=AsyncWebClient(base_url=slack_api.base_url))
        with pytest.raises(Unsealable):
            await adapter.services.clients.client(Workspace(team_id=ONE))
        await adapter.aclose()
    finally:
        await core.aclose()


# --- one workspace (SLACK_BOT_TOKEN) ------------------------------------------------------------------------------


async def test_with_one_token_an_uninstall_retires_the_workspace_and_its_jobs_end_once_slack_refuses_the_token(
    tmp_path: Path, slack_api: FakeSlackAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.slack import lifecycle
    from tests.fixtures.slack import slack_settings

    monkeypatch.setattr(lifecycle, "PRESENT_TTL", 0.0)  # every request looks again (in life: once a minute)
    videos = slow_offline_api(tmp_path / "videos")
    settings = slack_settings(tmp_path / "data")
    core = await build_app(settings, videos=videos)
    slack = await start_harness(slack_api, settings, core)
    try:
        await slack.command("/sora", "a lantern at night")
        await slack.settle()
        [generation] = await core.generations.recent(slack.scope)
        await sent(core, generation.id)

        slack_api.uninstall(slack_api.team_id)
        assert (await slack.event({"type": "app_uninstalled"})).status == 200
        assert await core.storage.get_retired_scope(slack.scope) is not None
        before = len(slack_api.posts_of(f"soracast-{generation.id}.mp4"))
        done = await finish(core, videos, generation.id)
        # Slack answers token_revoked: the job ends instead of being retried for ever.
        assert done.delivered_at is not None and len(slack_api.posts_of(f"soracast-{generation.id}.mp4")) == before

        # Installed again (the token works again): the next request from the workspace brings it back.
        slack_api.revoked.clear()
        await slack.command("/character", "list")
        await slack.settle()
        assert await core.storage.get_retired_scope(slack.scope) is None
    finally:
        await stop_harness(slack)
        await core.aclose()
        await videos.aclose()
