"""Running the CPU engine as a server process (uvicorn), the way ``gekro-ft serve --engine cpu`` does."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable


def run_cpu_server(base_model: str, adapters: dict[str, Path], *, host: str = "127.0.0.1", port: int = 8000,
                   api_key: str | None = None, served_name: str | None = None, max_batch_size: int = 8,
                   batch_wait_ms: float = 10.0, max_tokens_limit: int = 512,
                   max_body_bytes: int | None = None, dtype: str = "float32",
                   on_ready: Callable[[str], None] | None = None) -> int:
    """Load the model and adapters, serve until SIGINT/SIGTERM, then stop cleanly; returns 0."""
    import logging

    import uvicorn

    from gekro_ft.models import resolve_model
    from gekro_ft.process import server_root
    from gekro_ft.serve.cpu_engine import CPUEngine
    from gekro_ft.serve.openai_api import MAX_BODY_BYTES, create_app

    # 5xx answers and failed streams, each with its request id, on stderr beside uvicorn's own lines
    served = logging.getLogger("gekro_ft.serve")
    if not served.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        served.addHandler(handler)
        served.setLevel(logging.INFO)
        served.propagate = False

    engine = CPUEngine(resolve_model(base_model).source, adapters, max_batch_size=max_batch_size,
                       batch_wait_ms=batch_wait_ms, dtype=dtype)
    url = server_root(host, port) + "/v1"  # what a client dials, also when bound to 0.0.0.0
    app = create_app(engine, served_name or base_model, api_key, max_tokens_limit,
                     on_ready=(lambda: on_ready(url)) if on_ready else None,
                     max_body_bytes=max_body_bytes or MAX_BODY_BYTES)
    # uvicorn turns SIGINT/SIGTERM into a graceful shutdown: open requests finish first.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=10))
    try:
        server.run()
    finally:
        engine.close()
    return 0
