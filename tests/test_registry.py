"""CharacterRegistry: the rules of registering, renaming and removing @handles in a workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import Soracast
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.errors import (
    HandleTaken,
    HumanLikenessRefused,
    InvalidHandle,
    InvalidInput,
    NotAVideo,
    PermissionDenied,
    UnknownHandle,
)
from bot.models import Actor, Platform, Scope
from tests.fixtures.core import CONSOLE_SCOPE, TESTER

GUILD = Scope(platform=Platform.DISCORD, id="111")
OTHER_GUILD = Scope(platform=Platform.DISCORD, id="222")
OWNER = Actor(id="owner")
MEMBER = Actor(id="member")
ADMIN = Actor(id="admin", is_admin=True)


async def test_registering_stores_references_and_creates_the_native_character(
    core: Soracast, clip_maker, offline_api: OfflineVideosAPI
) -> None:
    clip = clip_maker("mascot.mp4", seconds=6.0)
    character = await core.registry.register(
        GUILD, OWNER, "@Mascot", clip, name="Captain  Mascot", rights_confirmed=True
    )
    assert (character.handle, character.name, character.owner_id) == ("mascot", "Captain Mascot", "owner")
    assert character.source_ref == "mascot.mp4"
    # The references live in storage, the clip cut to 3 s, with three stills.
    assert character.clip is not None and character.clip.seconds == pytest.approx(3.0, abs=0.1)
    assert [s.position for s in character.stills] == [0, 1, 2]
    stored = await core.storage.load_references(character.id)
    assert {b.reference.sha256 for b in stored} == {r.sha256 for r in character.references}
    # This backend keeps characters by id: the character was made there at once, from the stored clip.
    native = character.native_ids["offline"]
    assert (await offline_api.get_character(native)).name == "Captain Mascot"
    assert await core.registry.get(GUILD, "mascot") == character


async def test_the_display_name_defaults_from_the_handle(core: Soracast, clip_maker) -> None:
    character = await core.registry.register(GUILD, OWNER, "team_cat", clip_maker(), rights_confirmed=True)
    assert character.name == "Team Cat"


async def test_a_taken_handle_is_refused_without_uploading(
    core: Soracast, clip_maker, offline_api: OfflineVideosAPI
) -> None:
    await core.registry.register(GUILD, OWNER, "mascot", clip_maker(), rights_confirmed=True)
    uploads = len(list((offline_api.root / "characters").iterdir()))
    with pytest.raises(HandleTaken):
        await core.registry.register(GUILD, MEMBER, "mascot", clip_maker(), rights_confirmed=True)
    assert len(list((offline_api.root / "characters").iterdir())) == uploads


async def test_the_same_handle_lives_separately_in_two_workspaces(core: Soracast, clip_maker) -> None:
    first = await core.registry.register(GUILD, OWNER, "mascot", clip_maker(), rights_confirmed=True)
    second = await core.registry.register(
        OTHER_GUILD, OWNER, "mascot", clip_maker(color=(0, 0, 255)), rights_confirmed=True
    )
    assert first.id != second.id and first.native_ids != second.native_ids
    assert [c.id for c in await core.registry.list(GUILD)] == [first.id]
    await core.registry.remove(OTHER_GUILD, OWNER, "mascot")
    assert await core.registry.get(GUILD, "mascot") == first


@pytest.mark.parametrize("name, fragment", [
    ("x" * 81, "limit is 80"), ("   ", "empty"), ("Cap\x00tain", "control character"),
])
async def test_a_bad_display_name_is_refused(core: Soracast, clip_maker, name: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await core.registry.register(GUILD, OWNER, "mascot", clip_maker(), name=name, rights_confirmed=True)
    assert fragment in caught.value.message
    assert await core.registry.list(GUILD) == []


async def test_a_reserved_handle_is_refused(core: Soracast, clip_maker) -> None:
    with pytest.raises(InvalidHandle):
        await core.registry.register(GUILD, OWNER, "@everyone", clip_maker(), rights_confirmed=True)


async def test_a_clip_showing_a_real_person_is_refused_and_nothing_is_stored(core: Soracast, clip_maker) -> None:
    with pytest.raises(HumanLikenessRefused) as caught:
        await core.registry.register(GUILD, OWNER, "bob", clip_maker(title="a real person"), rights_confirmed=True)
    assert "real" in caught.value.user_text().lower()
    assert await core.registry.list(GUILD) == []


async def test_a_file_that_is_not_a_video_is_refused(core: Soracast, tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("definitely not a video")
    with pytest.raises(NotAVideo):
        await core.registry.register(GUILD, OWNER, "notes", fake, rights_confirmed=True)
    assert await core.registry.list(GUILD) == []


async def test_only_the_owner_or_an_admin_removes_or_renames(core: Soracast, clip_maker) -> None:
    await core.registry.register(GUILD, OWNER, "mascot", clip_maker(), rights_confirmed=True)
    with pytest.raises(PermissionDenied):
        await core.registry.remove(GUILD, MEMBER, "mascot")
    with pytest.raises(PermissionDenied):
        await core.registry.rename(GUILD, MEMBER, "mascot", "captain")
    renamed = await core.registry.rename(GUILD, OWNER, "mascot", "@captain")
    assert renamed.handle == "captain"
    removed = await core.registry.remove(GUILD, ADMIN, "captain")
    assert removed.handle == "captain" and await core.registry.list(GUILD) == []


async def test_an_unknown_handle_suggests_close_ones(core: Soracast, clip_maker) -> None:
    await core.registry.register(GUILD, OWNER, "mascot", clip_maker(), rights_confirmed=True)
    with pytest.raises(UnknownHandle) as caught:
        await core.registry.get(GUILD, "mascto")
    assert caught.value.suggestions == ["mascot"]


async def test_registering_can_be_limited_to_a_role(core: Soracast, clip_maker) -> None:
    with pytest.raises(PermissionDenied):
        await core.registry.configure(GUILD, MEMBER, register_role_id="42")
    await core.registry.configure(GUILD, ADMIN, register_role_id="42")
    with pytest.raises(PermissionDenied):
        await core.registry.register(GUILD, MEMBER, "mascot", clip_maker(), rights_confirmed=True)
    artist = Actor(id="artist", role_ids=frozenset({"42"}))
    registered = await core.registry.register(GUILD, artist, "mascot", clip_maker(), rights_confirmed=True)
    assert registered.owner_id == "artist"
    # Another workspace is not restricted.
    await core.registry.register(OTHER_GUILD, MEMBER, "mascot", clip_maker(), rights_confirmed=True)


async def test_autocomplete_prefers_prefixes(core: Soracast, clip_maker) -> None:
    for handle in ("mascot", "team_cat", "cat"):
        await core.registry.register(CONSOLE_SCOPE, TESTER, handle, clip_maker(), rights_confirmed=True)
    assert [c.handle for c in await core.registry.complete(CONSOLE_SCOPE, "@ca")] == ["cat", "team_cat"]


async def test_precheck_refuses_a_taken_handle_before_any_clip(core: Soracast, clip_maker) -> None:
    await core.registry.register(GUILD, OWNER, "mascot", clip_maker(), rights_confirmed=True)
    with pytest.raises(HandleTaken):
        await core.registry.precheck(GUILD, MEMBER, "@Mascot")
    with pytest.raises(InvalidInput):
        await core.registry.precheck(GUILD, MEMBER, "fresh", name="x" * 81)
    assert await core.registry.precheck(GUILD, MEMBER, "@Fresh") == "fresh"
