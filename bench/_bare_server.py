"""The baseline of `bench.load`: a bare WebSocket server with no runtime behind it.

Same stack as `greenroom serve` (greenroom's own HTTP/WebSocket server,
`actors._wire`, with the same listening socket and the same frame writer),
same token check, and the same event shapes at the same pace: on
`{"type": "run", "agent", "input", "run_id"}` the run's own task sends
`agent_started`, then what the demo agent would emit (`sleep`: `steps`
`agent_thinking` spread over `seconds`; `calc`: thinking, `tool_executing`,
`tool_completed`; `echo`: nothing), then `agent_completed`, each with `seq`
(per connection, from 1), `user_id`, `run_id` and `ts`, written straight to
the socket. No actors, no bridge, no replay window, no writer task; the
same garbage-collector settings as `greenroom serve` (`tuned_gc`).

    python -m bench._bare_server --port 0

prints `bare serving on http://HOST:PORT ...` first (as `greenroom serve`
does), and on SIGTERM or SIGINT closes every socket with 1001 and exits 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

import trio

import runtime
from actors._auth import DEV_SECRET, InvalidToken, TokenSigner
from actors._json import Encoder
from actors._serve import GC_THRESHOLD, tuned_gc
from actors._websocket import Handshake, WireSocket
from actors._wire import HttpRequest, HttpResponse, WireServer, open_listening_socket

CLOSE_GOING_AWAY = 1001
CLOSE_UNAUTHORIZED = 4401


#: Greenroom's own encoder (`actors._json`), built once: `json.dumps` with
#: options builds a new encoder on every call, which would charge the
#: baseline for nothing.
_dumps = Encoder(repr).encode


class BareService:
    """One task per run, writing its events straight to the socket."""

    def __init__(self, signer: TokenSigner) -> None:
        self.signer = signer
        self.sockets: set[WireSocket] = set()

    async def http(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(404, b"Not Found\n")

    async def websocket(self, handshake: Handshake) -> None:
        websocket = await handshake.accept()
        try:
            user_id = self.signer.verify(handshake.request.query.get("token"))
        except InvalidToken as error:
            await websocket.close(CLOSE_UNAUTHORIZED, str(error))
            return
        seq = 0

        async def send(type: str, run_id: str, data: dict[str, Any]) -> None:
            nonlocal seq
            seq += 1
            event = {
                "type": type,
                "seq": seq,
                "user_id": user_id,
                "run_id": run_id,
                "ts": time.time(),
                "data": data,
            }
            await websocket.send_texts((_dumps(event),))

        async def run(request: dict[str, Any]) -> None:
            began = trio.current_time()
            agent, input, run_id = request["agent"], request.get("input"), request["run_id"]
            await send("agent_started", run_id, {"agent": agent, "input": input})
            output: Any = input
            if agent == "sleep":
                seconds, steps = input["seconds"], input["steps"]
                for step in range(1, steps + 1):
                    await runtime.sleep(seconds / steps)
                    await send("agent_thinking", run_id, {"text": f"step {step} of {steps}"})
                output = {"slept": seconds, "steps": steps}
            elif agent == "calc":
                expression = input["expression"]
                await send("agent_thinking", run_id, {"text": f"evaluating {expression}"})
                args = {"expression": expression}
                call = {"tool": "calculate", "call_id": "call-1"}
                await send("tool_executing", run_id, {**call, "args": args})
                output = 14
                await send(
                    "tool_completed",
                    run_id,
                    {**call, "ok": True, "result": output, "duration_ms": 0.01},
                )
            duration = round((trio.current_time() - began) * 1000.0, 3)
            await send("agent_completed", run_id, {"output": output, "duration_ms": duration})

        self.sockets.add(websocket)
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    message = await websocket.receive()
                    if message is None:
                        nursery.cancel_scope.cancel()
                        return
                    request = json.loads(message)
                    if request.get("type") == "run":
                        nursery.start_soon(run, request)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away
        finally:
            self.sockets.discard(websocket)

    async def close_all(self) -> None:
        for websocket in list(self.sockets):
            await websocket.close(CLOSE_GOING_AWAY, "the server is shutting down")


async def serve(host: str, port: int) -> int:
    service = BareService(TokenSigner(DEV_SECRET))
    sock = open_listening_socket(host, port)
    http = WireServer(sock, service.http, service.websocket)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        async with trio.open_nursery() as nursery:
            await nursery.start(http.run)
            bound_host, bound_port = http.address
            print(
                f"bare serving on http://{bound_host}:{bound_port} "
                f"(WebSocket: ws://{bound_host}:{bound_port}/ws)",
                flush=True,
            )
            with tuned_gc(GC_THRESHOLD):
                async for _ in received:
                    break
            http.stop_accepting()
            with trio.move_on_after(10):
                await service.close_all()
                await http.wait_closed()
            http.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench._bare_server", description=__doc__)
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=0)
    args = cli.parse_args(argv)
    return trio.run(serve, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
