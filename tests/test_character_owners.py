"""A character belongs to someone, in the core: who may use it, asking its owner, the owner's notes about other
people's videos, taking videos down, standing instructions and the right to use its subject — on the real core
(SQLite, the offline renderer) with a messenger that records the private messages it is asked to send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.actions import VideoAction
from bot.app import Soracast, build_app
from bot.backends.base import CharacterInput, VideoRequest
from bot.backends.fal.models import find_model
from bot.backends.fal.payload import plan_request
from bot.backends.gemini.prompt import allocate, compose
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.characters.handles import mentions_of
from bot.characters.instructions import for_prompt
from bot.chat import present
from bot.errors import (
    AlreadyDecided,
    CharacterNotShared,
    HumanLikenessRefused,
    InvalidInput,
    MassMention,
    PermissionDenied,
    RightsNotConfirmed,
    UnknownRequest,
)
from bot.models import (
    AccessRequestStatus,
    Actor,
    GenerationOptions,
    GenerationStatus,
    Sharing,
    utcnow,
)
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, RecordingMessenger, fast_settings

SCOPE = CONSOLE_SCOPE
ALICE = Actor(id="alice", display_name="Alice")
BOB = Actor(id="bob", display_name="Bob")
CAROL = Actor(id="carol", display_name="Carol")
ADMIN = Actor(id="boss", display_name="Boss", is_admin=True)
WITHIN = 30.0


@pytest.fixture
async def app(tmp_path: Path, offline_api: OfflineVideosAPI) -> AsyncIterator[Soracast]:
    core = await build_app(fast_settings(tmp_path / "data", owner_digest_minutes=10), videos=offline_api)
    core.generations.register_notifier(SCOPE.platform, RecordingMessenger(closed=frozenset({"closed"})))
    try:
        yield core
    finally:
        await core.aclose()


def messenger(core: Soracast) -> RecordingMessenger:
    found = core.generations.runner.notifier(SCOPE.platform)
    assert isinstance(found, RecordingMessenger)
    return found


async def register(core: Soracast, clip_maker, handle: str = "mascot", owner: Actor = ALICE, **kw: object):
    return await core.registry.register(SCOPE, owner, handle, clip_maker(), rights_confirmed=True, **kw)


async def posted(core: Soracast, actor: Actor, prompt: str) -> str:
    generation = await core.generations.generate(SCOPE, actor, prompt, GenerationOptions(), TARGET)
    final = await core.generations.wait_finished(generation.id, within=WITHIN)
    assert final.status is GenerationStatus.COMPLETED
    return final.id


async def stored_state(core: Soracast) -> tuple[int, int]:
    """Generations stored and spending rows: what a refused request must not leave behind."""
    generations = len(await core.generations.recent(SCOPE, 1000))
    usage = await core.budgets.usage(SCOPE, ADMIN)
    return generations, sum(r.videos for r in usage.rows)


# --- who may use a character ---------------------------------------------------------------------------------


async def test_a_character_kept_to_its_owner_is_refused_to_others_before_anything_is_stored(
    app: Soracast, clip_maker, offline_api: OfflineVideosAPI
) -> None:
    mascot = await register(app, clip_maker)
    await app.access.set_sharing(SCOPE, ALICE, "mascot", Sharing.ONLY_ME)
    before = await stored_state(app)
    jobs_before = len(list((offline_api.root / "videos").glob("*"))) if (offline_api.root / "videos").exists() else 0

    with pytest.raises(CharacterNotShared) as refused:
        await app.generations.generate(SCOPE, BOB, "@mascot surfing", GenerationOptions(), TARGET)

    error = refused.value
    assert "@mascot belongs to <@alice>" in error.message and "/character ask @mascot" in (error.hint or "")
    assert error.people == ("alice",) and error.offers == ((VideoAction.ASK, mascot.id, "Ask to use @mascot"),)
    assert await stored_state(app) == before, "nothing stored or reserved for a refused request"
    videos_dir = offline_api.root / "videos"
    assert (len(list(videos_dir.glob("*"))) if videos_dir.exists() else 0) == jobs_before, "nothing was sent"
    # Its owner and admins always may.
    await posted(app, ALICE, "@mascot surfing")
    await posted(app, ADMIN, "@mascot waving")


async def test_approved_people_may_use_it_and_unshared_ones_no_longer(app: Soracast, clip_maker) -> None:
    await register(app, clip_maker)
    shared = await app.access.share(SCOPE, ALICE, "mascot", ["bob", "alice"])
    assert (shared.sharing, shared.approved) == (Sharing.APPROVED, ["bob"]), "the owner is never on the list"
    assert present.sharing_text(shared) == "<@alice>, admins and <@bob>"
    await posted(app, BOB, "@mascot dancing")
    with pytest.raises(CharacterNotShared):
        await app.generations.generate(SCOPE, CAROL, "@mascot dancing", GenerationOptions(), TARGET)

    after = await app.access.unshare(SCOPE, ALICE, "mascot", ["bob"])
    assert after.approved == [] and present.sharing_text(after) == "only <@alice> (and admins)"
    with pytest.raises(CharacterNotShared):
        await app.generations.generate(SCOPE, BOB, "@mascot dancing", GenerationOptions(), TARGET)

    everyone = await app.access.set_sharing(SCOPE, ALICE, "mascot", Sharing.EVERYONE)
    assert everyone.sharing is Sharing.EVERYONE and everyone.approved == []
    await posted(app, CAROL, "@mascot dancing")


async def test_only_the_owner_or_an_admin_changes_who_may_use_it(app: Soracast, clip_maker) -> None:
    await register(app, clip_maker)
    for change in (
        app.access.set_sharing(SCOPE, BOB, "mascot", Sharing.EVERYONE),
        app.access.share(SCOPE, BOB, "mascot", ["bob"]),
        app.access.unshare(SCOPE, BOB, "mascot", ["carol"]),
        app.registry.set_instructions(SCOPE, BOB, "mascot", "never speaks"),
        app.registry.set_notify(SCOPE, BOB, "mascot", False),
    ):
        with pytest.raises(PermissionDenied) as refused:
            await change
        assert "Only the owner of @mascot (<@alice>) or an admin" in refused.value.message
    assert (await app.access.share(SCOPE, ADMIN, "mascot", ["carol"])).approved == ["carol"]


async def test_unsharing_says_what_is_wrong(app: Soracast, clip_maker) -> None:
    await register(app, clip_maker)
    with pytest.raises(InvalidInput, match="Everyone in this workspace may use @mascot"):
        await app.access.unshare(SCOPE, ALICE, "mascot", ["bob"])
    await app.access.share(SCOPE, ALICE, "mascot", ["bob"])
    with pytest.raises(InvalidInput, match="<@carol> is not among the people approved"):
        await app.access.unshare(SCOPE, ALICE, "mascot", ["carol"])
    with pytest.raises(InvalidInput, match="name someone else"):
        await app.access.share(SCOPE, ALICE, "mascot", ["alice"])


async def test_remix_extend_and_cuts_of_a_video_with_someone_elses_character_are_refused(
    app: Soracast, clip_maker
) -> None:
    await register(app, clip_maker)
    video = await posted(app, ALICE, "@mascot surfing")
    await app.access.set_sharing(SCOPE, ALICE, "mascot", Sharing.ONLY_ME)
    before = await stored_state(app)
    with pytest.raises(CharacterNotShared):
        await app.generations.remix(SCOPE, BOB, video, "at night", TARGET)
    with pytest.raises(CharacterNotShared):
        await app.generations.extend(SCOPE, BOB, video, "it goes on", TARGET)
    with pytest.raises(CharacterNotShared):
        await app.generations.character_from_generation(SCOPE, BOB, video, "@copycat", rights_confirmed=True)
    assert await stored_state(app) == before
    assert [c.handle for c in await app.registry.list(SCOPE)] == ["mascot"]


# --- asking to use it ----------------------------------------------------------------------------------------


async def test_asking_messages_the_owner_once_and_approving_lets_the_person_in(app: Soracast, clip_maker) -> None:
    await register(app, clip_maker)
    await app.access.set_sharing(SCOPE, ALICE, "mascot", Sharing.ONLY_ME)
    sent = messenger(app)

    asked = await app.requests.ask(SCOPE, BOB, "@mascot")
    assert asked.new and asked.request.owner_told
    assert [(owner, r.id) for owner, r in sent.asked] == [("alice", asked.request.id)]
    again = await app.requests.ask(SCOPE, BOB, "mascot")
    assert not again.new and again.request.id == asked.request.id
    assert len(sent.asked) == 1, "asking again does not message the owner again"
    assert "have not decided yet" in present.asked_text(again.request, again.character, new=False)

    assert [r.id for r, _ in await app.requests.waiting(SCOPE, ALICE)] == [asked.request.id]
    assert await app.requests.waiting(SCOPE, CAROL) == []
    with pytest.raises(PermissionDenied, match="Only <@alice>, who owns @mascot, or an admin"):
        await app.requests.decide(CAROL, asked.request.id, True, scope=SCOPE)

    decision = await app.requests.decide(ALICE, asked.request.id, True, scope=None)  # from a direct message
    assert decision.request.status is AccessRequestStatus.APPROVED and decision.requester_told
    assert [r.id for r in sent.answered] == [asked.request.id]
    mascot = await app.registry.get(SCOPE, "mascot")
    assert (mascot.sharing, mascot.approved) == (Sharing.APPROVED, ["bob"]), "approving shares it with them"
    await posted(app, BOB, "@mascot at the beach")

    with pytest.raises(AlreadyDecided, match="already approved by <@alice>"):
        await app.requests.decide(ADMIN, asked.request.id, False, scope=SCOPE)
    with pytest.raises(InvalidInput, match="You may already use @mascot"):
        await app.requests.ask(SCOPE, BOB, "mascot")


async def test_a_declined_person_is_told_and_may_ask_again_only_the_next_day(app: Soracast, clip_maker) -> None:
    mascot = await register(app, clip_maker)
    await app.access.set_sharing(SCOPE, ALICE, "mascot", Sharing.ONLY_ME)
    asked = await app.requests.ask_for(SCOPE, BOB, mascot.id)  # the Ask button carries the character id
    decision = await app.requests.decide(ADMIN, asked.request.id, False, scope=SCOPE)
    assert decision.request.status is AccessRequestStatus.DECLINED and decision.request.decided_by == "boss"
    assert "<@boss> declined your request" in present.decision_text(decision.request, decision.character)
    assert (await app.registry.get(SCOPE, "mascot")).approved == []
    with pytest.raises(InvalidInput, match="You may ask again from"):
        await app.requests.ask(SCOPE, BOB, "mascot")


async def test_an_admin_decides_only_in_the_workspace_and_nobody_decides_an_unknown_request(
    app: Soracast, clip_maker
) -> None:
    await register(app, clip_maker)
    await app.access.set_sharing(SCOPE, ALICE, "mascot", Sharing.ONLY_ME)
    asked = await app.requests.ask(SCOPE, BOB, "mascot")
    with pytest.raises(PermissionDenied):
        await app.requests.decide(ADMIN, asked.request.id, True, scope=None)  # a direct message: no admin there
    with pytest.raises(UnknownRequest):
        await app.requests.decide(ALICE, "rnothere1", True, scope=SCOPE)


async def test_an_owner_who_cannot_be_messaged_still_finds_the_request(app: Soracast, clip_maker) -> None:
    await register(app, clip_maker, owner=Actor(id="closed"))
    await app.access.set_sharing(SCOPE, Actor(id="closed"), "mascot", Sharing.ONLY_ME)
    asked = await app.requests.ask(SCOPE, BOB, "mascot")
    assert asked.new and not asked.request.owner_told
    assert "could not be sent a private message" in present.asked_text(asked.request, asked.character, new=True)
    unseen = await app.requests.unseen(SCOPE, "closed")
    assert [r.id for r, _ in unseen] == [asked.request.id]
    await app.requests.seen(asked.request.id)
    assert await app.requests.unseen(SCOPE, "closed") == []


async def test_a_request_made_before_a_restart_is_decided_after_it(
    tmp_path: Path, offline_api: OfflineVideosAPI, clip_maker
) -> None:
    settings = fast_settings(tmp_path / "data")
    first = await build_app(settings, videos=offline_api)
    first.generations.register_notifier(SCOPE.platform, RecordingMessenger())
    await register(first, clip_maker)
    await first.access.set_sharing(SCOPE, ALICE, "mascot", Sharing.ONLY_ME)
    asked = await first.requests.ask(SCOPE, BOB, "mascot")
    await first.aclose()

    second = await build_app(settings, videos=offline_api)
    second.generations.register_notifier(SCOPE.platform, told := RecordingMessenger())
    try:
        decision = await second.requests.decide(ALICE, asked.request.id, True, scope=None)
        assert decision.request.status is AccessRequestStatus.APPROVED
        assert [r.id for r in told.answered] == [asked.request.id]
        with pytest.raises(AlreadyDecided):
            await second.requests.decide(ALICE, asked.request.id, True, scope=None)
    finally:
        await second.aclose()


# --- the owner knows -----------------------------------------------------------------------------------------


async def test_the_owner_gets_one_note_per_video_of_someone_else_and_a_digest_when_many(
    app: Soracast, clip_maker
) -> None:
    await register(app, clip_maker)
    await register(app, clip_maker, "rex")
    sent = messenger(app)
    notices = app.generations.notices

    own = await posted(app, ALICE, "@mascot alone")
    first = await posted(app, BOB, "@mascot and @rex surfing")
    await notices.flush()
    assert sent.notes == [("alice", [first], [("mascot", "rex")])], "one note per video, none for her own"
    assert own not in sent.notes[0][1]

    second = await posted(app, BOB, "@mascot skiing")
    third = await posted(app, CAROL, "@rex skiing")
    wait = await notices.flush()
    assert len(sent.notes) == 1, "within the window the next videos wait"
    assert wait is not None and 0 < wait <= 600
    await notices.flush(now=utcnow() + timedelta(minutes=11))
    assert sent.notes[1] == ("alice", [second, third], [("mascot",), ("rex",)]), "then they come as one digest"
    await notices.flush(now=utcnow() + timedelta(minutes=30))
    assert len(sent.notes) == 2, "a note is sent once"


async def test_no_note_when_the_owner_turned_them_off_or_the_video_never_got_posted(
    app: Soracast, clip_maker
) -> None:
    await register(app, clip_maker)
    sent = messenger(app)
    off = await app.registry.set_notify(SCOPE, ALICE, "mascot", False)
    assert "will no longer be told" in present.notify_changed_text(off)
    await posted(app, BOB, "@mascot while notes are off")
    await app.registry.set_notify(SCOPE, ALICE, "mascot", True)
    moderated = await app.generations.generate(SCOPE, BOB, "@mascot [[moderation]]", GenerationOptions(), TARGET)
    failed = await app.generations.wait_finished(moderated.id, within=WITHIN)
    assert failed.status is GenerationStatus.FAILED
    await app.generations.notices.flush(now=utcnow() + timedelta(hours=2))
    assert sent.notes == []


async def test_an_owner_who_cannot_be_messaged_is_not_retried_forever(app: Soracast, clip_maker) -> None:
    closed = Actor(id="closed")
    await register(app, clip_maker, owner=closed)
    sent = messenger(app)
    await posted(app, BOB, "@mascot hello")
    await app.generations.notices.flush()
    await app.generations.notices.flush(now=utcnow() + timedelta(hours=1))
    assert [owner for owner, _, _ in sent.notes] == ["closed"]


# --- every video it appears in, and taking them down ------------------------------------------------------


async def test_the_owner_lists_every_video_with_the_character_and_deletes_anyones(
    app: Soracast, clip_maker, offline_api: OfflineVideosAPI
) -> None:
    await register(app, clip_maker)
    mine = await posted(app, ALICE, "@mascot mine")
    bobs = await posted(app, BOB, "@mascot bob's")
    await posted(app, BOB, "no character here")

    listed = await app.character_videos.list(SCOPE, ALICE, "@mascot")
    assert [g.id for g in listed.videos] == [bobs, mine]
    lines = present.video_lines(listed.videos)
    assert lines[0].startswith(f"`{bobs}` · <@bob> · ") and "posted" in lines[0]
    with pytest.raises(PermissionDenied):
        await app.character_videos.list(SCOPE, CAROL, "mascot")
    with pytest.raises(PermissionDenied):
        await app.generations.delete(SCOPE, CAROL, bobs)

    stored = await app.generations.get(SCOPE, bobs)
    deleted = await app.generations.delete(SCOPE, ALICE, bobs)
    assert deleted.status is GenerationStatus.DELETED
    assert messenger(app).removed == [bobs], "its post is taken out of the chat"
    assert stored.video_path is not None and not stored.video_path.exists(), "its file here is gone"
    assert not (offline_api.root / "videos" / (stored.api_video_id or "") / "video.mp4").exists()
    assert [g.id for g in (await app.character_videos.list(SCOPE, ADMIN, "mascot")).videos] == [mine]


# --- standing instructions -------------------------------------------------------------------------------


async def test_instructions_reach_every_prompt_by_name_and_never_as_a_handle(app: Soracast, clip_maker) -> None:
    await register(app, clip_maker, name="Captain Mascot")
    await register(app, clip_maker, "rex")
    character = await app.registry.set_instructions(
        SCOPE, ALICE, "mascot", '"@mascot always wears the red scarf; never speaks to @rex"'
    )
    assert character.instructions == "@mascot always wears the red scarf; never speaks to @rex"
    assert "Instructions: @mascot always wears" in "\n".join(present.owner_settings_lines(character))

    generation = await app.generations.generate(SCOPE, BOB, "@mascot surfing", GenerationOptions(), TARGET)
    assert generation.api_prompt == (
        "Captain Mascot surfing\n\nStanding instructions for Captain Mascot: Captain Mascot always wears the red "
        "scarf; never speaks to rex."
    )
    assert "@" not in generation.api_prompt
    cleared = await app.registry.set_instructions(SCOPE, ALICE, "mascot", "clear")
    assert cleared.instructions == ""


async def test_instructions_that_are_too_long_or_ping_everyone_are_refused(app: Soracast, clip_maker) -> None:
    await register(app, clip_maker)
    with pytest.raises(InvalidInput, match="the limit is 500"):
        await app.registry.set_instructions(SCOPE, ALICE, "mascot", "x" * 501)
    with pytest.raises(MassMention):
        await app.registry.set_instructions(SCOPE, ALICE, "mascot", "wave at @everyone")
    assert (await app.registry.get(SCOPE, "mascot")).instructions == ""


# --- the right to use its subject ------------------------------------------------------------------------


async def test_registering_needs_the_rights_confirmation_which_is_stored_with_who_and_when(
    app: Soracast, clip_maker
) -> None:
    with pytest.raises(RightsNotConfirmed):
        await app.registry.register(SCOPE, ALICE, "mascot", clip_maker(), rights_confirmed=False)
    with pytest.raises(RightsNotConfirmed):
        await app.registry.precheck(SCOPE, ALICE, "mascot", rights_confirmed=False)
    assert await app.registry.list(SCOPE) == []
    before = utcnow()
    character = await register(app, clip_maker)
    assert character.rights_confirmed_by == "alice"
    assert character.rights_confirmed_at is not None and character.rights_confirmed_at >= before
    assert present.rights_text(character).startswith("confirmed by <@alice> on ")


async def test_a_likeness_refusal_names_the_rights_confirmation(app: Soracast, clip_maker) -> None:
    with pytest.raises(HumanLikenessRefused) as refused:
        await app.registry.register(
            SCOPE, ALICE, "uncle", clip_maker(title="a real person"), rights_confirmed=True
        )
    assert "Right to use its subject: @uncle: confirmed by <@alice>" in (refused.value.hint or "")
    assert "even with that confirmation" in (refused.value.hint or "")
    assert await app.registry.list(SCOPE) == []


async def test_a_video_refused_for_likeness_names_the_rights_confirmation(gemini_core: Soracast, clip_maker) -> None:
    # Gemini keeps no characters: its likeness refusal comes with the first video that sends the references.
    await gemini_core.registry.register(
        SCOPE, ALICE, "uncle", clip_maker(title="a person on holiday"), rights_confirmed=True
    )
    with pytest.raises(HumanLikenessRefused) as refused:
        await gemini_core.generations.generate(SCOPE, ALICE, "@uncle dancing", GenerationOptions(), TARGET)
    assert "real person" in refused.value.message
    assert "Right to use its subject: @uncle: confirmed by <@alice> on " in (refused.value.hint or "")
    assert refused.value.people == ("alice",)


# --- each backend places the instructions in its own prompt form ------------------------------------------


def _request(tmp_path: Path, model: str, instructions: dict[str, str]) -> VideoRequest:
    stills = [tmp_path / f"s{i}.jpg" for i in range(3)]
    for still in stills:
        still.write_bytes(b"\xff\xd8\xff")
    prompt = "@mascot surfs past @rex"
    characters = [
        # As the core hands them over: the instructions already rid of @handles
        # (`bot.characters.instructions.for_prompt`).
        CharacterInput(handle=h, name=n, character_id=f"c{h}", clip=tmp_path / "c.mp4", stills=stills,
                       instructions=for_prompt(instructions.get(h, ""), n, (h,)))
        for h, n in (("mascot", "Captain Mascot"), ("rex", "Rex"))
    ]
    return VideoRequest(
        prompt=prompt, mentions=mentions_of(prompt), characters=characters, model=model, seconds=5,
        size="1280x720", request_key="gtest",
    )


def test_gemini_ties_the_instructions_to_the_characters_references(tmp_path: Path) -> None:
    request = _request(tmp_path, "gemini-omni-1.1-flash", {"mascot": "always wears the red scarf"})
    parts = allocate(request.characters, max_images=3, max_videos=3)
    assert compose(request, parts) == (
        "Captain Mascot is the character shown in <VIDEO_REF_0> <IMAGE_REF_0> <IMAGE_REF_1>. Rex is the character "
        "shown in <VIDEO_REF_1> <IMAGE_REF_2>. Standing instructions for Captain Mascot: always wears the red scarf."
        "\n\nCaptain Mascot surfs past Rex"
    )


def test_kling_reads_the_instructions_by_element_and_vidu_by_name(tmp_path: Path) -> None:
    request = _request(tmp_path, "unused", {"rex": "never looks at @Element1 or team@Element2"})
    kling = find_model("kling-o1")
    vidu = find_model("vidu-q3")
    assert kling is not None and vidu is not None
    assert plan_request(kling, request).prompt == (
        "@Element1 surfs past @Element2\n\nStanding instructions for @Element2: never looks at Element1 or "
        "teamElement2."
    )
    assert plan_request(vidu, request).prompt == (
        "Captain Mascot surfs past Rex\n\nStanding instructions for Rex: never looks at Element1 or teamElement2."
    )


async def test_a_video_that_fails_for_likeness_later_says_whose_confirmation_it_was_made_under(
    app: Soracast, clip_maker, offline_api: OfflineVideosAPI
) -> None:
    await register(app, clip_maker)
    offline_api.fail_next(code="human_likeness", message="The video seems to show a real person.")
    generation = await app.generations.generate(SCOPE, BOB, "@mascot dancing", GenerationOptions(), TARGET)
    failed = await app.generations.wait_finished(generation.id, within=WITHIN)

    assert failed.status is GenerationStatus.FAILED and failed.error_code == "human_likeness"
    text = present.failure_text(failed)
    assert "Right to use its subject: @mascot: confirmed by its registrant on " in text
    assert "<@" not in text, "the channel's message names no one"
    assert messenger(app).failures[-1].error_message == failed.error_message, "the posted failure says it too"
