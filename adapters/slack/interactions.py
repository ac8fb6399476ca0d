"""Buttons under posted videos and the modals they (and `/character add`) open → core calls."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from adapters.slack import render
from adapters.slack.files import SlackFile
from adapters.slack.origin import ModalState, Origin, from_interaction, team_of
from adapters.slack.owners import SHARE_HANDLE
from adapters.slack.services import Services
from bot.actions import ACTION_ID, VideoAction, decode_action
from bot.characters.handles import validate_handle
from bot.characters.registry import validate_name
from bot.chat.commands import parse_start
from bot.errors import SoracastError
from bot.models import GenerationKind, Sharing

log = logging.getLogger(__name__)

#: Longest error text shown under a modal field.
_FIELD_ERROR_MAX = 300


def _value(values: dict[str, Any], block_id: str) -> dict[str, Any]:
    return (values.get(block_id) or {}).get(block_id) or {}


def _values(view: dict[str, Any]) -> dict[str, Any]:
    return (view.get("state") or {}).get("values") or {}


def _text(values: dict[str, Any], block_id: str) -> str:
    return (_value(values, block_id).get("value") or "").strip()


class Interactions:
    """Remix / Extend / Make character / Delete / Cancel buttons and every soracast modal's submit."""

    def __init__(self, services: Services) -> None:
        self.s = services

    def register(self, app: AsyncApp) -> None:
        # Only well-formed ids of ours: anything else finds no listener and is refused with a 404.
        app.action(ACTION_ID)(self.video_button)
        app.view(render.CHARACTER_VIEW)(self.character_submitted)
        app.view(render.REMIX_VIEW)(self.remix_submitted)
        app.view(render.EXTEND_VIEW)(self.extend_submitted)
        app.view(render.SHARE_VIEW)(self.share_submitted)

    def _modal_state(self, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext) -> ModalState:
        return ModalState.decode(
            view.get("private_metadata") or "",
            team_id=team_of(body, context.team_id),
            user_id=(body.get("user") or {}).get("id", ""),
            context=context,
        )

    # --- buttons -------------------------------------------------------------------------------------------------

    async def video_button(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        decoded = decode_action(str(action.get("action_id", "")))
        if decoded is None:
            return
        verb, generation_id = decoded
        origin = from_interaction(body, context)
        if verb in (VideoAction.ASK, VideoAction.APPROVE, VideoAction.DECLINE):
            work = self._owner_button(origin, verb, generation_id, body)
        else:
            work = self._button(origin, verb, generation_id, body.get("trigger_id", ""), body.get("message") or {})
        self.s.background.run(origin, work, f"button-{verb.value}")

    async def _owner_button(self, origin: Origin, verb: VideoAction, target: str, body: dict[str, Any]) -> None:
        """Ask (under a refusal; `target` is the character) and Approve / Decline (in the owner's direct message or
        `/character requests`; `target` is the request). A decided direct message then shows the decision."""
        core = self.s.core
        actor = await self.s.actors.get(origin)
        if verb is VideoAction.ASK:
            outcome = await core.requests.ask_for(origin.scope, actor, target)
            await self.s.replier.ephemeral(origin, render.asked_message(outcome))
            return
        decision = await core.requests.decide(actor, target, verb is VideoAction.APPROVE, scope=origin.scope)
        shown = render.request_message(decision.request, decision.character)
        container = body.get("container") or {}
        message = body.get("message") or {}
        if origin.channel_id and message.get("ts") and not container.get("is_ephemeral"):
            await (await self.s.client(origin)).chat_update(
                channel=origin.channel_id, ts=message["ts"], text=shown.text, blocks=shown.blocks
            )
        else:
            await self.s.replier.ephemeral(origin, shown)

    async def _button(
        self, origin: Origin, verb: VideoAction, generation_id: str, trigger_id: str, message: dict[str, Any]
    ) -> None:
        core = self.s.core
        if verb is VideoAction.CANCEL:
            # Its message becomes "Cancelled" (without the button) when the core reports it, like any change.
            actor = await self.s.actors.get(origin)
            generation = await core.generations.cancel(origin.scope, actor, generation_id)
            await self.s.replier.ephemeral(origin, render.cancelled_message(generation))
            return
        if verb is VideoAction.DELETE:
            # Under the video or in `/character videos`: the core takes the post (and its file) out of the channel.
            actor = await self.s.actors.get(origin)
            generation = await core.generations.delete(origin.scope, actor, generation_id)
            await self.s.replier.ephemeral(origin, render.deleted_message(generation))
            return
        # A video with a character the person may not use is refused now, not after the form.
        actor = await self.s.actors.get(origin)
        generation = await core.generations.check_characters(origin.scope, actor, generation_id)
        metadata = ModalState(origin=origin, generation_id=generation.id).encode()
        if verb is VideoAction.REMIX:
            view = render.remix_modal(metadata, generation)
        elif verb is VideoAction.EXTEND:
            choices = core.generations.extend_choices(generation)
            if not choices:
                # The button is not offered for such videos; an old message may still carry one.
                core.generations.derivable(generation, GenerationKind.EXTEND)
            default = min(choices, key=lambda d: abs(d - int(generation.seconds)))
            view = render.extend_modal(metadata, generation, [str(c) for c in choices], str(default))
        else:
            # Who may not register is told now, not after filling in the form.
            await core.registry.check_can_register(origin.scope, actor)
            view = render.character_modal(metadata, generation_id=generation.id)
        await (await self.s.client(origin)).views_open(trigger_id=trigger_id, view=view)

    # --- modal submissions ------------------------------------------------------------------------------------

    async def character_submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        state = self._modal_state(body, view, context)
        values = _values(view)
        errors: dict[str, str] = {}

        def field(block_id: str, check: Any, raw: str) -> Any:
            try:
                return check(raw)
            except SoracastError as err:
                errors[block_id] = err.user_text()[:_FIELD_ERROR_MAX]
                return None

        # Checks that need no network run before the ack, so mistakes show on the field itself.
        handle = field(render.HANDLE, validate_handle, _text(values, render.HANDLE))
        name_raw = _text(values, render.NAME)
        name = field(render.NAME, validate_name, name_raw) if name_raw else None
        start = field(render.START, parse_start, _text(values, render.START))
        ticked = _value(values, render.CONFIRM).get("selected_options") or []
        confirmed = any(option.get("value") == render.CONFIRMED for option in ticked)
        if not confirmed:
            errors[render.CONFIRM] = "Tick this to register: the character's subject must be yours to use."
        file = self._picked_file(state, values, errors)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        origin = state.origin
        if file is not None:
            work = self.s.register_clip(
                origin, file, handle, name=name, start=start or 0.0, rights_confirmed=confirmed
            )
        else:
            work = self._character_from_generation(
                origin, state.generation_id or "", handle, name, start or 0.0, confirmed
            )
        self.s.background.run(origin, work, "register")

    def _picked_file(self, state: ModalState, values: dict[str, Any], errors: dict[str, str]) -> SlackFile | None:
        if state.file:
            return SlackFile.from_metadata(state.file)
        if state.generation_id:
            return None
        picked = _value(values, render.CLIP).get("files") or []
        if not picked:
            errors[render.CLIP] = "Choose an MP4 or MOV clip."
            return None
        file = SlackFile.from_payload(picked[0])
        try:
            self.s.files.check(file)  # what Slack said of the file; an unknown size is checked after files.info
        except SoracastError as err:
            errors[render.CLIP] = err.user_text()[:_FIELD_ERROR_MAX]
        return file

    async def _character_from_generation(
        self, origin: Origin, generation_id: str, handle: str, name: str | None, start: float, confirmed: bool
    ) -> None:
        actor = await self.s.actors.get(origin)
        character = await self.s.core.generations.character_from_generation(
            origin.scope, actor, generation_id, handle, name=name, start=start, rights_confirmed=confirmed
        )
        await self.s.replier.ephemeral(origin, render.registered_message(character))

    async def remix_submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        state = self._modal_state(body, view, context)
        await ack()
        prompt = render.unescape(_text(_values(view), render.PROMPT))
        self.s.background.run(state.origin, self._remix(state, prompt), "remix")

    async def _remix(self, state: ModalState, prompt: str) -> None:
        origin = state.origin
        actor = await self.s.actors.get(origin)
        generation = await self.s.core.generations.remix(
            origin.scope, actor, state.generation_id or "", prompt, origin.target(), announce=True
        )
        await self.s.post_generation(generation)

    async def extend_submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        state = self._modal_state(body, view, context)
        await ack()
        values = _values(view)
        prompt = render.unescape(_text(values, render.PROMPT))
        seconds = (_value(values, render.SECONDS).get("selected_option") or {}).get("value")
        self.s.background.run(state.origin, self._extend(state, prompt, seconds), "extend")

    async def _extend(self, state: ModalState, prompt: str, seconds: str | None) -> None:
        origin = state.origin
        actor = await self.s.actors.get(origin)
        generation = await self.s.core.generations.extend(
            origin.scope, actor, state.generation_id or "", prompt, origin.target(), seconds=seconds, announce=True
        )
        await self.s.post_generation(generation)

    async def share_submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """The share form: everyone, only its owner, or exactly the people picked."""
        state = self._modal_state(body, view, context)
        values = _values(view)
        chosen = (_value(values, render.SHARING).get("selected_option") or {}).get("value")
        try:
            sharing = Sharing(chosen)
        except ValueError:
            await ack(response_action="errors", errors={render.SHARING: "Choose who may use it."})
            return
        people = [str(u) for u in _value(values, render.PEOPLE).get("selected_users") or []]
        if sharing is Sharing.APPROVED and not people:
            await ack(response_action="errors", errors={render.PEOPLE: "Pick the people who may use it."})
            return
        await ack()
        work = self._share(state, sharing, people if sharing is Sharing.APPROVED else None)
        self.s.background.run(state.origin, work, "share")

    async def _share(self, state: ModalState, sharing: Sharing, people: list[str] | None) -> None:
        origin = state.origin
        actor = await self.s.actors.get(origin)
        handle = state.extra.get(SHARE_HANDLE, "")
        character = await self.s.core.access.set_sharing(origin.scope, actor, handle, sharing, people)
        await self.s.replier.ephemeral(origin, render.sharing_message(character))
