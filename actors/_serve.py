"""Running the service in one process, and shutting it down in order."""

from __future__ import annotations

import contextlib
import gc
import logging
import resource
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import attrs
import trio

from runtime import raise_if_alone

from ._auth import TokenSigner
from ._config import CoreConfig, _seconds, _seconds_or_zero, _whole
from ._core import Core, open_core
from ._errors import InvalidRequest
from ._wire import WireServer, open_listening_socket
from .demo import DEMO_AGENTS
from .service import GreenroomService, ServiceSettings

log = logging.getLogger("greenroom")

#: Allocations between young garbage collections in `greenroom serve`
#: (Python's default is 700).
GC_THRESHOLD = 50_000
#: Young collections per middle one, and middle ones per full one, in
#: `greenroom serve` (Python's defaults are 10 and 10).
GC_OLDER = (50, 100)


def _whole_number(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(f"{attribute.name} must be a whole number >= 0, got {value!r}")


#: The most `gc.set_threshold` takes (a C int).
GC_THRESHOLD_MAX = 2**31 - 1


def _gc_threshold(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    _whole_number(instance, attribute, value)
    if value > GC_THRESHOLD_MAX:
        raise InvalidRequest(
            f"{attribute.name} must be at most {GC_THRESHOLD_MAX:,} (Python's limit), got {value!r}"
        )


def _port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise InvalidRequest(f"port must be a whole number from 0 to 65535, got {value!r}")


@attrs.frozen(kw_only=True)
class ServeOptions:
    """How `serve` listens and serves; a bad value raises `InvalidRequest`
    naming it, before anything listens."""

    host: str = "127.0.0.1"
    port: int = attrs.field(default=8765, validator=_port)
    core: CoreConfig = attrs.Factory(CoreConfig)
    allowed_origins: tuple[str, ...] = ()
    max_message_bytes: int = attrs.field(default=1 << 20, validator=_whole(1))
    write_timeout: float = attrs.field(default=30.0, validator=_seconds)
    shutdown_timeout: float = attrs.field(default=10.0, validator=_seconds_or_zero)
    #: See `tuned_gc`; 0 leaves Python's garbage collector as it is.
    gc_threshold: int = attrs.field(default=GC_THRESHOLD, validator=_gc_threshold)
    #: Connections open at once (0: what the open-file limit allows, less
    #: `FILES_SPARE`); one more is answered 503 and closed.
    max_connections: int = attrs.field(default=0, validator=_whole_number)


def authority(host: str, port: int) -> str:
    """`host:port` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@attrs.define(eq=False)
class RunningServer:
    """What `open_server` yields: the address, and the parts for inspection."""

    core: Core
    service: GreenroomService
    http: WireServer

    @property
    def address(self) -> tuple[str, int]:
        return self.http.address

    @property
    def url(self) -> str:
        return f"ws://{authority(*self.address)}/ws"


@asynccontextmanager
async def open_server(options: ServeOptions, signer: TokenSigner) -> AsyncIterator[RunningServer]:
    """Serve the demo agents on `options.host:port` (port 0 picks one) for
    the duration of the block. Leaving it shuts down in order: stop
    accepting, end live runs with `agent_error` "shutdown", deliver those
    events, close every socket with 1001 (all within `shutdown_timeout`),
    then abort whatever is left."""
    settings = ServiceSettings(
        allowed_origins=options.allowed_origins,
        max_message_bytes=options.max_message_bytes,
        write_timeout=options.write_timeout,
    )
    sock = open_listening_socket(options.host, options.port)
    with sock:  # closed here too if the core fails to start
        async with open_core(options.core, agents=DEMO_AGENTS) as core:
            service = GreenroomService(signer, settings, core)
            http = WireServer(
                sock,
                service.wire_http,
                service.wire_websocket,
                max_message_bytes=options.max_message_bytes,
                max_connections=options.max_connections or connections_the_file_limit_allows(),
            )
            raised: BaseException | None = None  # by the caller's block
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(http.run)
                    try:
                        yield RunningServer(core, service, http)
                    except BaseException as error:
                        raised = error
                        raise
                    finally:
                        with trio.CancelScope(shield=True):
                            http.stop_accepting()
                            with trio.move_on_after(options.shutdown_timeout):
                                await service.shutdown()
                                await http.wait_closed()
                            http.stop()
            except BaseExceptionGroup as group:
                raise_if_alone(group, raised)  # the block's exception, not a group of one
                raise


#: Open files kept for what is not a connection (the listener, logs,
#: epoll, a scrape) when the connection limit follows the open-file limit.
FILES_SPARE = 128


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (one
    connection is one file: the usual soft 1,024 would refuse the 1,025th
    with EMFILE); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def connections_the_file_limit_allows() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(1, soft - FILES_SPARE)


@contextmanager
def tuned_gc(threshold: int) -> Iterator[None]:
    """For a process that serves: move everything alive now (modules, the
    core, the demo agents) out of the collector's sight (`gc.freeze`), and
    collect the young generation every `threshold` allocations instead of
    every 700, and the older ones less often too (`GC_OLDER`). With
    thousands of connections, each young collection walks objects that live
    for the whole connection, and a full one walks everything: at 5,000
    connections a full collection took over a second and found nothing to
    free, several times during a shutdown. Cycles are still collected, later
    and in bigger batches; `bench.load` reports the RSS. Restores the
    collector's settings on the way out; 0 changes nothing."""
    if threshold == 0:
        yield
        return
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, *GC_OLDER)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


async def serve(
    options: ServeOptions,
    signer: TokenSigner,
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> int:
    """Serve until one of `signals` arrives, then shut down in order
    (see `open_server`) and return 0. Raises the open-file limit first
    (`raise_open_file_limit`)."""
    raise_open_file_limit()
    with trio.open_signal_receiver(*signals) as received:
        try:
            server = open_server(options, signer)
            running = await server.__aenter__()
        except OSError as error:
            print(
                f"greenroom: cannot listen on {options.host}:{options.port}: {error}",
                file=sys.stderr,
            )
            return 1
        # Tuned once serving (what start-up built is frozen) until the last
        # socket is closed: the shutdown allocates as much as a busy minute.
        # Whatever fails meanwhile, the server still shuts down in order.
        with contextlib.ExitStack() as tuned:
            try:
                tuned.enter_context(tuned_gc(options.gc_threshold))
                print(
                    f"greenroom serving on http://{authority(*running.address)} "
                    f"(WebSocket: {running.url})",
                    flush=True,
                )
                async for signum in received:
                    log.info("received %s: shutting down", signal.Signals(signum).name)
                    break
            finally:
                await server.__aexit__(None, None, None)
    log.info("stopped")
    return 0
