"""`soracast try | emulate | check | discord | slack | web | migrate` — the one place the app is started from."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.cli.logs import setup_logging
from bot.config import Settings, load_settings
from bot.errors import ConfigError, SoracastError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soracast", description="Reusable @handle characters and AI videos in team chat."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    try_cmd = sub.add_parser("try", help="an interactive terminal session (offline renderer without a key)")
    try_cmd.add_argument("--script", type=Path, help="run the commands in this file, one per line, then exit")

    emulate = sub.add_parser("emulate", help="serve an emulated video API over HTTP for any client")
    emulate.add_argument("--api", choices=("openai", "gemini", "fal"), default="openai", help="which API to serve")
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.add_argument("--port", type=int, default=8089)
    emulate.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second")
    emulate.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered with a 5xx")
    emulate.add_argument(
        "--lost-answer-rate", type=float, default=0.0, help="share of those 5xx sent after the work was done"
    )
    emulate.add_argument("--rate-limit", type=float, default=0.0, help="requests per second before 429s (0: off)")
    emulate.add_argument(
        "--render",
        choices=("full", "shared", "stub"),
        default="full",
        help="full: every video drawn; shared/stub: cheaper renders for load tests",
    )

    sub.add_parser(
        "check", help="prove each configured key, endpoint and model with the cheapest calls (no video is made)"
    )
    sub.add_parser("discord", help="run the Discord bot (gateway; the Procfile's worker)")
    sub.add_parser("slack", help="run the Slack app in Socket Mode")
    sub.add_parser("web", help="serve Slack over HTTP and the video webhooks (the Procfile's web)")
    sub.add_parser("migrate", help="apply pending database migrations, then exit (the Procfile's release)")
    sub.add_parser("new-key", help="print a new key for SORACAST_SECRET_KEY")
    sub.add_parser("rekey", help="seal every stored token again under the first key of SORACAST_SECRET_KEY")
    forget = sub.add_parser(
        "forget-workspace", help="delete a workspace's characters, videos, usage, settings and tokens now"
    )
    forget.add_argument("workspace", help="the workspace as the logs show it, e.g. slack:T0123ABCD")
    forget.add_argument("--yes", action="store_true", help="really delete (without it: say what would go)")
    return parser


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "try":
        from adapters.console.app import run_console

        return await run_console(settings, script=args.script)
    if args.command == "emulate":
        from bot.backends.offline.emulator import run_emulator

        await run_emulator(
            settings,
            api=args.api,
            lost_answer_rate=args.lost_answer_rate,
            host=args.host,
            port=args.port,
            time_scale=args.time_scale,
            fail_rate=args.fail_rate,
            rate_limit=args.rate_limit,
            render=args.render,
        )
        return 0
    if args.command == "check":
        from bot.cli.checkup import run_checkup

        found = await run_checkup(settings)
        for line in found.lines:
            print(line)
        if found.ok:
            print("soracast check: every backend answered as it should; no video was made")
            return 0
        for problem in found.problems:
            print(f"soracast check: {problem}", file=sys.stderr)
        return 1
    if args.command == "discord":
        from adapters.discord.app import run_discord

        await run_discord(settings)
        return 0
    if args.command == "slack":
        from adapters.slack.app import run_socket_mode

        await run_socket_mode(settings)
        return 0
    if args.command == "web":
        if settings.slack_configured:
            from adapters.slack.app import run_web

            await run_web(settings)
        else:
            from bot.web.web_app import run_webhooks_only

            await run_webhooks_only(settings)
        return 0
    if args.command == "migrate":
        from bot.app import migrate

        await migrate(settings)
        print("soracast: the database schema is up to date")
        return 0
    if args.command == "rekey":
        from bot.cli.operator import rekey

        done, unreadable = await rekey(settings)
        print(f"soracast: {done} installation(s) sealed under the first key of SORACAST_SECRET_KEY")
        if unreadable:
            print(f"soracast: no key opens {', '.join(unreadable)}; those must be installed again", file=sys.stderr)
            return 1
        return 0
    if args.command == "forget-workspace":
        from bot.cli.operator import forget_workspace, parse_scope

        print("soracast: " + await forget_workspace(settings, parse_scope(args.workspace), confirmed=args.yes))
        return 0 if args.yes else 1
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `soracast` console script."""
    args = _parser().parse_args(argv)
    if args.command == "new-key":
        from bot.sealing import new_key

        print(new_key())
        return 0
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"soracast: configuration error: {exc.message}", file=sys.stderr)
        return 2
    if args.command == "try" and "SORACAST_LOG_LEVEL" not in os.environ:
        # The terminal session tells its user everything itself; operator logs would only interleave.
        settings = settings.model_copy(update={"log_level": "ERROR"})
    setup_logging(settings)
    try:
        return asyncio.run(_run(args, settings))
    except KeyboardInterrupt:
        return 130
    except SoracastError as exc:
        # Start-up failures the operator can fix (missing token, bad database URL) get one clear line.
        print(f"soracast: {exc.user_text()}", file=sys.stderr)
        return 2
