"""The operator's commands: `soracast new-key`, `soracast rekey`, `soracast forget-workspace`.

They open the database only (no backend, no chat platform), so they are safe to run beside live processes.
"""

from __future__ import annotations

from bot.app import open_storage
from bot.config import Settings
from bot.errors import InvalidInput
from bot.models import Platform, Scope, utcnow
from bot.sealing import SecretBox, Unsealable
from bot.videos.departures import Departures


def parse_scope(text: str) -> Scope:
    """`slack:T0123` (the platform, then the workspace's id, as the logs show it)."""
    platform, sep, ident = text.strip().partition(":")
    try:
        if not sep or not ident:
            raise ValueError
        return Scope(platform=Platform(platform.lower()), id=ident)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a workspace.", hint="Write it as the logs do: slack:T0123ABCD or discord:1234567890."
        ) from None


async def rekey(settings: Settings) -> tuple[int, list[str]]:
    """Seal every stored installation again under the first key of SORACAST_SECRET_KEY; (resealed, unreadable)."""
    box = SecretBox.from_settings(settings, "`soracast rekey` seals the stored tokens under its first key.")
    store = open_storage(settings)
    await store.open()
    done, unreadable = 0, []
    try:
        for platform in Platform:
            for installation in await store.installations(platform):
                try:
                    installation.sealed = box.reseal(installation.sealed)
                except Unsealable:
                    ids = "/".join(part for part in (installation.org_id, installation.workspace_id) if part)
                    unreadable.append(f"{platform.value}:{ids}")
                    continue
                installation.updated_at = utcnow()
                await store.save_installation(installation)
                done += 1
    finally:
        await store.close()
    return done, unreadable


async def forget_workspace(settings: Settings, scope: Scope, *, confirmed: bool) -> str:
    """Delete a workspace's characters, videos, spending, settings and tokens now; without `confirmed`, only
    say what would go."""
    store = open_storage(settings)
    await store.open()
    try:
        characters = await store.list_characters(scope)
        installations = [
            i for i in await store.installations(scope.platform)
            if i.workspace_id == scope.id or (i.org_id == scope.id and not i.workspace_id)
        ]
        if not confirmed:
            return (
                f"{scope.key}: {len(characters)} character(s), its videos, usage and settings"
                f"{' and its tokens' if installations else ''} would be deleted. Run again with --yes to delete them."
            )
        for installation in installations:
            await store.delete_installation(scope.platform, installation.org_id, installation.workspace_id)
        purged = await Departures(store, settings).forget_now(scope)
    finally:
        await store.close()
    left = f"; {purged.still_running} video(s) still being made go once they end" if purged.still_running else ""
    return (
        f"{scope.key}: deleted {purged.characters} character(s), {len(purged.generations)} video(s) and "
        f"{len(installations)} installation(s){left}."
    )
