"""``gekro-ft serve`` as a library call: a profile in, a running server until it is stopped."""

from __future__ import annotations

import sys
from collections.abc import Callable

from gekro_ft.serve.profile import Profile


def serve(profile: Profile, say: Callable[[str], None] | None = None) -> int:
    """Serve ``profile`` on its engine; returns the exit code once the server has stopped."""
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    profile.check_bind()
    if profile.engine == "vllm":
        from gekro_ft.serve.vllm import run_vllm

        return run_vllm(profile, say=say)
    from gekro_ft.serve.adapters import prepare_adapters
    from gekro_ft.serve.cpu_server import run_cpu_server
    from gekro_ft.serve.ready import ServerInfo, ready_text

    infos = prepare_adapters(profile.base_model, profile.adapters, check_base=profile.check_adapter_base,
                             source=profile.source)
    key = profile.api_key()
    say(f"loading {profile.base_model} with {len(infos)} adapter(s) on the CPU engine")

    def ready(url: str) -> None:
        models = [profile.served_name, *infos]
        info = ServerInfo(url, models, next(iter(infos), profile.served_name),
                          profile.api_key_env if key else None, f"{profile.host}:{profile.port}")
        print(ready_text(info), flush=True)

    cpu = profile.cpu
    return run_cpu_server(profile.base_model, {n: i.path for n, i in infos.items()}, host=profile.host,
                          port=profile.port, api_key=key, served_name=profile.served_name,
                          max_batch_size=cpu.max_batch_size, batch_wait_ms=cpu.batch_wait_ms,
                          max_tokens_limit=cpu.max_tokens_limit,
                          max_body_bytes=int(cpu.max_body_mib * 2**20),
                          dtype=cpu.dtype, on_ready=ready)
