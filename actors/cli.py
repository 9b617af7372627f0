"""The `greenroom` command: serve, token, chat."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

import trio

from ._auth import DEV_SECRET, TokenSigner
from ._config import CoreConfig
from ._errors import InvalidRequest

SECRET_ENV = "GREENROOM_SECRET"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

log = logging.getLogger("greenroom")


def _secret(dev: bool, *, for_serving: bool) -> str | None:
    secret = os.environ.get(SECRET_ENV)
    if secret:
        return secret
    if dev:
        if for_serving:
            print(
                "*** DEVELOPMENT MODE: tokens are signed with the public development secret.\n"
                f"*** Anyone can mint a token for any user. Set {SECRET_ENV} for real use. ***",
                file=sys.stderr,
                flush=True,
            )
        return DEV_SECRET
    return None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenroom",
        description="greenroom: agents that stream their progress to each user over WebSocket.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the WebSocket/HTTP service with the demo agents",
        description=(
            f"Serve /ws, /metrics and /healthz. Tokens are verified with ${SECRET_ENV}; "
            "without it, pass --dev to use the public development secret. "
            "SIGINT or SIGTERM shuts down gracefully."
        ),
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port (default %(default)s; 0 picks a free one)",
    )
    serve.add_argument(
        "--dev", action="store_true", help=f"use the development secret when ${SECRET_ENV} is unset"
    )
    defaults = CoreConfig()
    serve.add_argument(
        "--max-engines",
        type=int,
        default=defaults.max_engines,
        help="engines alive at once (default %(default)s)",
    )
    serve.add_argument(
        "--max-runs-per-user",
        type=int,
        default=defaults.max_runs_per_user,
        help="concurrent runs per user (default %(default)s)",
    )
    serve.add_argument(
        "--max-queued-runs-per-user",
        type=int,
        default=defaults.max_queued_runs_per_user,
        help="runs waiting per user (default %(default)s)",
    )
    serve.add_argument(
        "--run-timeout",
        type=float,
        default=defaults.run_timeout,
        help="seconds a run may take (default %(default)s)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout,
        help="seconds before an idle engine is reaped (default %(default)s)",
    )
    serve.add_argument(
        "--replay-window",
        type=int,
        default=defaults.replay_window,
        help="events kept per user for resume (default %(default)s)",
    )
    serve.add_argument(
        "--subscriber-queue",
        type=int,
        default=defaults.subscriber_queue,
        help="events buffered per connection before it is closed 1013 (default %(default)s)",
    )
    serve.add_argument(
        "--max-message-bytes",
        type=int,
        default=1 << 20,
        help="largest accepted frame; larger closes 1009 (default %(default)s)",
    )
    serve.add_argument(
        "--write-timeout",
        type=float,
        default=30.0,
        help="seconds a socket write may stall before the connection is aborted "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser Origin allowed on /ws (repeatable; '*' for any)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds to end runs and close sockets on shutdown (default %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default %(default)s)",
    )

    token = commands.add_parser(
        "token",
        help="print a token for a user",
        description=f"Mint a token with ${SECRET_ENV}, or the development secret when it is unset.",
    )
    token.add_argument("user", help="the user id the token names")
    token.add_argument(
        "--ttl", type=float, default=3600.0, help="seconds the token is valid (default %(default)s)"
    )

    chat = commands.add_parser(
        "chat",
        help="talk to an agent and watch its events live",
        description=(
            "Connect as USER and run an agent. With MESSAGE, run once and exit when it ends; "
            "without, each line you type is a run. Input that parses as JSON is sent as JSON."
        ),
    )
    chat.add_argument("user", help="the user to chat as (a token is minted for it)")
    chat.add_argument(
        "message", nargs="*", help="a message to send once (omit for interactive use)"
    )
    chat.add_argument(
        "--agent", default="echo", help="agent to run: echo, calc, sleep (default %(default)s)"
    )
    chat.add_argument(
        "--url",
        default=f"ws://{DEFAULT_HOST}:{DEFAULT_PORT}/ws",
        help="service URL (default %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `chat USER --agent calc 2+3*4`: words after the options are the message.
        if args.command != "chat" or any(word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.message = [*args.message, *extra]
    try:
        match args.command:
            case "serve":
                return _serve(args)
            case "token":
                signer = TokenSigner(_client_secret())
                print(signer.mint(args.user, ttl=args.ttl))
                return 0
            case "chat":
                from ._chat import chat

                signer = TokenSigner(_client_secret())
                text = " ".join(args.message) if args.message else None
                return trio.run(chat, args.url, signer.mint(args.user), args.agent, text)
    except InvalidRequest as error:
        print(f"greenroom: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def _client_secret() -> str:
    secret = _secret(True, for_serving=False)
    assert secret is not None
    if not os.environ.get(SECRET_ENV):
        print(
            f"(no ${SECRET_ENV}: using the development secret, as `serve --dev` does)",
            file=sys.stderr,
        )
    return secret


def _serve(args: argparse.Namespace) -> int:
    secret = _secret(args.dev, for_serving=True)
    if secret is None:
        print(
            f"greenroom: refusing to serve without a signing secret.\n"
            f"  Set {SECRET_ENV}, e.g.\n"
            f"    export {SECRET_ENV}=$(openssl rand -hex 32)\n"
            "  or pass --dev to use the public development secret on your own machine.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    from ._serve import ServeOptions, serve

    options = ServeOptions(
        host=args.host,
        port=args.port,
        core=CoreConfig(
            max_engines=args.max_engines,
            max_runs_per_user=args.max_runs_per_user,
            max_queued_runs_per_user=args.max_queued_runs_per_user,
            run_timeout=args.run_timeout,
            idle_timeout=args.idle_timeout,
            replay_window=args.replay_window,
            subscriber_queue=args.subscriber_queue,
        ),
        allowed_origins=tuple(args.allow_origin),
        max_message_bytes=args.max_message_bytes,
        write_timeout=args.write_timeout,
        shutdown_timeout=args.shutdown_timeout,
    )
    return trio.run(serve, options, TokenSigner(secret), (signal.SIGINT, signal.SIGTERM))


if __name__ == "__main__":
    sys.exit(main())
