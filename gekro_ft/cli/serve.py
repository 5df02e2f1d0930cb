"""``gekro-ft serve``: the base model and its adapters behind an OpenAI-compatible endpoint."""

from __future__ import annotations

import click


@click.command()
@click.argument("profile", required=False)
@click.option("--adapter", "-a", "adapters", multiple=True, metavar="NAME=DIR_OR_MODELS_URI",
              help="Serve an adapter as NAME (repeatable); adds to or replaces the profile's.")
@click.option("--engine", type=click.Choice(["vllm", "cpu"]),
              help="vllm (a GPU, or vLLM's CPU build from `make vllm`), cpu (the CPU engine, anywhere).")
@click.option("--base-model", help="Base model: the bundled default's name, a Hugging Face id or a directory.")
@click.option("--host", help="Address to listen on (default 127.0.0.1; others need an API key).")
@click.option("--port", type=int, help="Port (default 8000).")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the API key clients must send.")
def serve(profile: str | None, adapters: tuple[str, ...], engine: str | None, base_model: str | None,
          host: str | None, port: int | None, api_key_env: str | None) -> None:
    """Serve PROFILE (a file or a name in serve/; default: the bundled model on the CPU engine).

    Requests pick an adapter with their `model` field; `/v1/models` lists the base and
    every adapter. Stop with Ctrl-C or SIGTERM: open requests finish first.

    \b
    Examples:
      gekro-ft serve cpu-default
      gekro-ft serve --engine cpu --adapter tickets=work/demo/train/adapter
      gekro-ft serve vllm-llama-3.1-8b --adapter support=models:/support-llama@champion
      GEKRO_FT_VLLM=.venv-vllm/bin/python gekro-ft serve vllm-cpu --adapter tickets=work/demo/train/adapter

    \b
    vLLM is found in the profile's vllm.executable, $GEKRO_FT_VLLM (a vllm command or the
    bin/python of a vLLM environment), a `vllm` command on PATH, or ./.venv-vllm/bin/python.
    """
    from gekro_ft.serve.adapters import parse_adapter_option
    from gekro_ft.serve.launch import serve as run
    from gekro_ft.serve.profile import load_profile

    overrides = {"engine": engine, "base_model": base_model, "host": host, "port": port,
                 "api_key_env": api_key_env,
                 "adapters": dict(parse_adapter_option(a) for a in adapters) or None}
    raise SystemExit(run(load_profile(profile, overrides)))
