"""The `greenroom` command: serve, token, chat."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from ._auth import DEV_SECRET, TokenSigner
from ._config import CoreConfig
from ._errors import InvalidRequest

if TYPE_CHECKING:
    from ._serve import ServeOptions

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


_CORE = CoreConfig()
#: serve's limits: flag, type, default, meaning.
_LIMIT_FLAGS: tuple[tuple[str, type, object, str], ...] = (
    ("--max-engines", int, _CORE.max_engines, "engines alive at once"),
    ("--max-runs-per-user", int, _CORE.max_runs_per_user, "concurrent runs per user"),
    ("--max-queued-runs-per-user", int, _CORE.max_queued_runs_per_user, "runs waiting per user"),
    ("--run-timeout", float, _CORE.run_timeout, "seconds a run may take"),
    ("--idle-timeout", float, _CORE.idle_timeout, "seconds before an idle engine is reaped"),
    (
        "--engine-linger",
        float,
        _CORE.engine_linger,
        "seconds an engine with no run stays awake before it hibernates",
    ),
    ("--replay-window", int, _CORE.replay_window, "events kept per user for resume"),
    (
        "--replay-bytes",
        int,
        _CORE.replay_bytes,
        "most bytes of events kept per user for resume (fewer events if they are large)",
    ),
    (
        "--replay-retention",
        float,
        _CORE.replay_retention,
        "seconds a user's replay window outlives their last connection, run and event",
    ),
    (
        "--seq-retention",
        float,
        _CORE.seq_retention,
        "seconds a quiet user's last seq is remembered after their replay window is dropped",
    ),
    (
        "--subscriber-queue",
        int,
        _CORE.subscriber_queue,
        "events buffered per connection before it is closed 1013",
    ),
    (
        "--max-message-bytes",
        int,
        1 << 20,
        "largest accepted message in bytes (a text as UTF-8); larger closes 1009",
    ),
    (
        "--write-timeout",
        float,
        30.0,
        "seconds a socket write may stall before the connection is aborted",
    ),
    ("--shutdown-timeout", float, 10.0, "seconds to end runs and close sockets on shutdown"),
    (
        "--max-connections",
        int,
        0,
        "connections open at once, one more answered 503 (0: what the open-file limit "
        "allows, raised to its hard limit, less 128)",
    ),
    (
        "--gc-threshold",
        int,
        50_000,
        "allocations between young garbage collections (Python's default: 700; 0 keeps it)",
    ),
)


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
    for flag, kind, default, meaning in _LIMIT_FLAGS:
        serve.add_argument(
            flag, type=kind, default=default, help=f"{meaning} (default %(default)s)"
        )
    serve.add_argument(
        "--deliver-inline",
        action="store_true",
        help=(
            "deliver each event in the task that emits it while the event bridge is idle: "
            "much lower latency under load, for about a tenth more CPU per event"
        ),
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser Origin allowed on /ws (repeatable; '*' for any)",
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
        usage="%(prog)s [-h] [--agent AGENT] [--url URL] user [message ...] [-- message ...]",
        description=(
            "Connect as USER and run an agent. With MESSAGE, run once, print that run's "
            "events and exit when it ends. Without, each line read is a run, shown with its "
            "run id (for /cancel); at the end of the input, chat waits for the runs it "
            "started to end. Input that parses as JSON is sent as JSON. A message that "
            "starts with '-' goes after '--'."
        ),
        epilog=(
            "Exit status: 0 if every run completed; 1 if one ended in agent_error, a request "
            "was refused, or the connection failed or closed; 2 for bad arguments."
        ),
    )
    chat.add_argument("user", help="the user to chat as (a token is minted for it)")
    chat.add_argument(
        "message",
        nargs="*",
        default=[],
        help="a message to send once (omit for interactive use)",
    )
    chat.add_argument(
        "--agent", default="echo", help="agent to run: echo, calc, sleep (default %(default)s)"
    )
    chat.add_argument(
        "--url",
        type=_ws_url,
        default=f"ws://{DEFAULT_HOST}:{DEFAULT_PORT}/ws",
        help="service URL, ws:// or wss:// (an IPv6 host in []; default %(default)s)",
    )
    return parser


def _ws_url(text: str) -> str:
    from ._chat import check_url

    try:
        return check_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _split_message(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The arguments before the first `--`, and the words after it (chat's
    message words, even if they start with '-'; `main` refuses them for
    any other command)."""
    words = list(argv)
    if "--" not in words:
        return words, []
    split = words.index("--")
    return words[:split], words[split + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    words, after_dashes = _split_message(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(words)
    # `chat USER --agent calc 2+3*4`: words after the options are the message.
    if (extra or after_dashes) and args.command != "chat":
        parser.error(f"unrecognized arguments: {' '.join([*extra, *after_dashes])}")
    if options := [word for word in extra if _looks_like_an_option(word)]:
        parser.error(
            f"unrecognized arguments: {' '.join(options)} "
            "(a message that starts with '-' goes after '--')"
        )
    if args.command == "chat":
        args.message = [*args.message, *extra, *after_dashes]
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


def _looks_like_an_option(word: str) -> bool:
    """`--name` or `-x`: not message text such as `-5+3`."""
    return word.startswith("--") or (len(word) > 1 and word[0] == "-" and word[1].isalpha())


def _client_secret() -> str:
    secret = _secret(True, for_serving=False)
    assert secret is not None
    if not os.environ.get(SECRET_ENV):
        print(
            f"(no ${SECRET_ENV}: using the development secret, as `serve --dev` does)",
            file=sys.stderr,
        )
    return secret


class _LogFormatter(logging.Formatter):
    """The serve log's lines, with each second's date and time written once:
    a busy server writes two audit lines a run."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"


def _configure_logging(level: str) -> None:
    """Log lines to stderr, without the thread and process details that no
    line shows (each costs a lookup per record)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormatter())
    logging.basicConfig(level=level, handlers=[handler])


def _serve_options(args: argparse.Namespace) -> ServeOptions:
    """`serve`'s flags as options; raises `InvalidRequest` for a bad value."""
    from ._serve import ServeOptions

    return ServeOptions(
        host=args.host,
        port=args.port,
        core=CoreConfig(
            max_engines=args.max_engines,
            max_runs_per_user=args.max_runs_per_user,
            max_queued_runs_per_user=args.max_queued_runs_per_user,
            run_timeout=args.run_timeout,
            idle_timeout=args.idle_timeout,
            engine_linger=args.engine_linger,
            replay_window=args.replay_window,
            replay_bytes=args.replay_bytes,
            replay_retention=args.replay_retention,
            seq_retention=args.seq_retention,
            subscriber_queue=args.subscriber_queue,
            deliver_inline=args.deliver_inline,
        ),
        allowed_origins=tuple(args.allow_origin),
        max_message_bytes=args.max_message_bytes,
        write_timeout=args.write_timeout,
        shutdown_timeout=args.shutdown_timeout,
        gc_threshold=args.gc_threshold,
        max_connections=args.max_connections,
    )


def _serve(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    from ._serve import serve

    options = _serve_options(args)
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
    return trio.run(serve, options, TokenSigner(secret), (signal.SIGINT, signal.SIGTERM))


if __name__ == "__main__":
    sys.exit(main())
