"""`bench.load`'s raw client loop: every raw connection of a phase in one
epoll set, served by one worker thread (`Mux`)."""

from __future__ import annotations

import json
import random
import select
import time
from collections.abc import Callable

import trio

from ._load_client import Books, Load, RawWebSocket, User, _client_frame

#: The longest the thread blocks in one `epoll.poll`: how soon it notices a
#: cancellation when no socket is ready.
_TICK = 0.1
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT


class Mux:
    """Every raw connection of a phase in one epoll set, served by one thread.

    The connections are made in trio and handed over with `add`, all before
    `serve`. From then on a worker thread owns them and their `User`s: it
    starts each user's first run after its random delay and each next run
    when the last one ended, `recv`s once from every socket that became
    readable, checks the events (`User.take`) and answers the server's
    close frames. Per wake-up the thread pays one `epoll.poll`; going
    through trio's scheduler instead (its pass, the one-shot registration
    re-armed, the nested epoll) cost about 60 µs more of CPU per wake-up,
    which at a few events per wake-up was the largest share of the
    client's CPU per event.

    The thread shares only counters with trio (`Books`, read by the
    monitor) and reports through `settle` and `closed`, which must be safe
    to call from any thread.
    """

    def __init__(
        self,
        load: Load,
        books: Books,
        settle: Callable[[], None],
        closed: Callable[[], None],
    ) -> None:
        self.load = load
        self.books = books
        self.settle = settle
        self.closed = closed
        self.epoll = select.epoll()
        self.conns: dict[int, tuple[RawWebSocket, User]] = {}
        self.writing: set[int] = set()  # waiting to flush what a socket did not take
        request = {"type": "run", "agent": load.agent, "input": load.input}
        #: Each run's request body: the same for every user.
        self.requests = [
            json.dumps({**request, "run_id": f"r{number}"}).encode()
            for number in range(load.runs_per_user)
        ]

    def add(self, ws: RawWebSocket, user: User) -> None:
        """Hand a connection over (from trio, before `serve`)."""
        fd = ws.sock.fileno()
        self.conns[fd] = (ws, user)
        self.epoll.register(fd, _IN)

    async def serve(self) -> None:
        """Run every user's runs and serve every connection, in a worker
        thread, until the last connection is closed.

        If cancelled, the thread notices within `_TICK` seconds, closes the
        sockets left and returns; then this raises `trio.Cancelled`.
        """
        await trio.to_thread.run_sync(self._serve)

    def _serve(self) -> None:
        epoll, conns, poll = self.epoll, self.conns, self.epoll.poll
        check_cancelled, clock = trio.from_thread.check_cancelled, time.monotonic
        starts = self._start_times()
        try:
            while conns:
                timeout = _TICK
                if starts:
                    timeout = min(timeout, max(0.0, starts[-1][0] - clock()))
                ready = poll(timeout)
                check_cancelled()
                now = time.time()
                for fd, flags in ready:
                    entry = conns.get(fd)
                    if entry is None:
                        continue
                    ws, user = entry
                    if flags & _OUT:
                        self._flush(fd, ws)
                    texts = ws.feed()
                    if texts:
                        running = user.run_id is not None
                        user.take(texts, now)
                        if running and user.run_id is None:
                            self._next_run(fd, ws, user)
                    if ws.closed:
                        self._drop(fd, ws, user)
                    elif ws.unsent:
                        self._write_later(fd)
                while starts and starts[-1][0] <= clock():
                    _, fd = starts.pop()
                    if fd in conns:
                        self._next_run(fd, *conns[fd])
        finally:
            for ws, _ in conns.values():
                ws.sock.close()  # no trio task waits on it: notify_closing is not needed
            epoll.close()

    def _start_times(self) -> list[tuple[float, int]]:
        """When each user's first run starts (monotonic), the last first."""
        jitter = self.load.jitter
        began = time.monotonic()
        rng = random.Random(0)  # the same delays for both servers
        delays = sorted((rng.uniform(0, jitter), fd) for fd in self.conns)
        return [(began + delay, fd) for delay, fd in reversed(delays)]

    def _next_run(self, fd: int, ws: RawWebSocket, user: User) -> None:
        if user.runs_started == self.load.runs_per_user:
            user.finished = True
            self.settle()
            return
        body = self.requests[user.runs_started]
        user.run_id, user.run_events = f"r{user.runs_started}", 0
        user.runs_started += 1
        ws.send(_client_frame(0x1, body))
        if ws.unsent:
            self._write_later(fd)

    def _write_later(self, fd: int) -> None:
        """The socket did not take all: flush the rest once it is writable."""
        if fd not in self.writing:
            self.writing.add(fd)
            self.epoll.modify(fd, _IN | _OUT)

    def _flush(self, fd: int, ws: RawWebSocket) -> None:
        ws.flush()
        if not ws.unsent:
            self.writing.discard(fd)
            self.epoll.modify(fd, _IN)

    def _drop(self, fd: int, ws: RawWebSocket, user: User) -> None:
        """The connection ended: count how, and whether a run was cut short."""
        books = self.books
        self.epoll.unregister(fd)
        del self.conns[fd]
        self.writing.discard(fd)
        ws.sock.close()
        books.close_codes[str(ws.close_code or "none")] += 1
        if not user.finished:
            books.violate(
                "closed_mid_run", f"{user.user_id}/{user.run_id}: close code {ws.close_code}"
            )
            user.finished = True
            self.settle()
        self.closed()
