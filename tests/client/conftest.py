"""The client package lives in client/ (its own distribution): import it from the checkout.
`live_server`: a Darkroom server on 127.0.0.1 (uvicorn in a thread, real sockets), serving what
`darkroom serve` would (the bundled model, or the tiny random SD1 model without its weights).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO_ROOT / "client"
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))


@dataclass(frozen=True)
class LiveServer:
    url: str
    model_id: str  # what /v1/models reports for the served model


def _served_model(settings: object) -> object:
    """What `darkroom serve` loads: the bundled model, or the tiny random SD1 model without its weights."""
    try:
        from server.models import load_served_model
    except ImportError:
        from pipelines.tiny import tiny_sd1

        return tiny_sd1(seed=0)
    model, _ = load_served_model(settings)  # type: ignore[arg-type]
    return model


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    pytest.importorskip("server.app", reason="server.app (the API workstream) is not in the tree yet")
    import uvicorn

    from server.app import create_app
    from server.engine import Engine
    from server.settings import Settings

    settings = Settings(
        manifest=str(REPO_ROOT / "weights_manifest.yaml"),
        weights_root=str(REPO_ROOT / "weights"),
        device="cpu",
        dtype="float32",
        max_batch=4,
        preview_every=2,
        preview_max_side=16,
    )
    import torch

    # The engine thread, uvicorn and the test share 2 cores: more intra-op threads than that
    # oversubscribe them (measured here: 16 tiny-model steps took 15.6 s with the default, 0.4 s with 1).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = _served_model(settings)
    app = create_app(settings, engine=Engine([model], settings))  # type: ignore[list-item]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", model_id=model.id)  # type: ignore[attr-defined]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        torch.set_num_threads(threads)
