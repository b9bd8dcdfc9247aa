"""`darkroom serve`: load the model, start the engine and the HTTP server, drain on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

from server.generation import EngineProtocol
from server.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    """DARKROOM_* settings, overridden by the command line where given."""
    overrides = {k: v for k in ("host", "port", "manifest", "model") if (v := getattr(args, k, None)) is not None}
    return Settings(**overrides)  # type: ignore[arg-type]


def how_to_call(settings: Settings, model_id: str, port: int) -> str:
    """The lines printed at start: where the server is and a curl example."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    auth = ' -H "Authorization: Bearer $DARKROOM_KEY"' if settings.api_keys else ""
    return (
        f"Darkroom is serving '{model_id}' on http://{host}:{port}\n"
        f"  curl -s http://{host}:{port}/generate{auth} -H 'Content-Type: application/json' \\\n"
        f"       -H 'Accept: image/png' -d '{{\"prompt\": \"a red circle left of a blue square\", \"seed\": 1}}' -o out.png\n"
        f"  models: curl -s http://{host}:{port}/v1/models   docs: http://{host}:{port}/docs"
    )


class DrainingServer(uvicorn.Server):
    """uvicorn that drains on SIGTERM: readiness turns 503 at once and stays served for
    `shutdown_delay_s` (so a load balancer sees it and stops routing here), then uvicorn stops
    accepting, lets in-flight requests finish, and the app's lifespan drains the engine.
    SIGINT (Ctrl-C) skips the delay."""

    def __init__(self, config: uvicorn.Config, engine: EngineProtocol, shutdown_delay_s: float = 0.0) -> None:
        super().__init__(config)
        self.engine = engine
        self.shutdown_delay_s = shutdown_delay_s
        self._exit_timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.engine.begin_drain()
        if sig == signal.SIGTERM and self.shutdown_delay_s > 0 and self._exit_timer is None:
            self._exit_timer = threading.Timer(self.shutdown_delay_s, super().handle_exit, (sig, frame))
            self._exit_timer.daemon = True
            self._exit_timer.start()
            return
        super().handle_exit(sig, frame)


async def serve_announcing(server: uvicorn.Server, announce: Callable[[int], None], poll_s: float = 0.05) -> None:
    """Run `server`; once its socket is bound, call announce(port) with the real port (port 0
    picks a free one)."""

    async def when_bound() -> None:
        while not server.started:
            await asyncio.sleep(poll_s)
        ports = [sock.getsockname()[1] for s in server.servers for sock in s.sockets]
        announce(ports[-1] if ports else server.config.port)

    task = asyncio.create_task(when_bound())
    try:
        await server.serve()
    finally:
        task.cancel()


def main(args: argparse.Namespace) -> int:
    """`darkroom serve`: load, start the engine and uvicorn, drain on exit."""

    from server.app import create_app
    from server.engine import Engine
    from server.models import load_served_models

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from(args)
    models, notice = load_served_models(settings)
    if notice:
        print(notice, file=sys.stderr, flush=True)
    engine = Engine(models, settings)
    app = create_app(settings, engine)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
        access_log=False,  # paths only would be safe, but bodies never are; keep the log to ids
    )
    server = DrainingServer(config, engine, settings.shutdown_delay_s)

    def announce(port: int) -> None:
        print(how_to_call(settings, ", ".join(m.id for m in models), port), flush=True)
        if notice:
            print("(tiny random model: expect noise, not pictures)", flush=True)

    asyncio.run(serve_announcing(server, announce))
    return 0
