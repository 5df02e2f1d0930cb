"""Running the router as a server process (uvicorn), as ``gekro-ft route serve`` does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gekro_ft.route.profile import RouteProfile


def prompt_counter(profile: RouteProfile) -> Callable[[list[dict[str, Any]]], int] | None:
    """messages -> prompt tokens with the capacity part's tokenizer and chat template, or None."""
    if profile.capacity is None:
        return None
    from gekro_ft.models import DEFAULT_MODEL, load_tokenizer

    tok = load_tokenizer(profile.capacity.tokenizer or DEFAULT_MODEL)

    def count(messages: list[dict[str, Any]]) -> int:
        try:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - a conversation the template refuses: estimate, do not fail
            return sum(len(str(m.get("content") or "")) for m in messages) // 4
        return len(tok(text, add_special_tokens=False)["input_ids"])

    return count


def run_router(profile: RouteProfile, prices_path: str | None = None,
               on_ready: Callable[[str], None] | None = None) -> int:
    """Check the bind, start the router, serve until SIGINT/SIGTERM; returns 0."""
    import uvicorn

    from gekro_ft.process import server_root
    from gekro_ft.route.server import Router, create_router_app

    profile.check_bind()
    router = Router(profile, prices_path, prompt_counter(profile))
    app = create_router_app(router, profile.api_key())
    if on_ready is not None:
        on_ready(server_root(profile.host, profile.port) + "/v1")
    server = uvicorn.Server(uvicorn.Config(app, host=profile.host, port=profile.port, log_level="warning",
                                           timeout_graceful_shutdown=10))
    server.run()
    return 0
