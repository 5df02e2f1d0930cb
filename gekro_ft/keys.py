"""Where an API key may be sent. Every command that sends one (bench, the eval endpoints)
asks here; the key is read from an environment variable at the moment it is sent.

The rules:

1. **A provider's key goes to that provider.** A variable named for a provider
   (:data:`PROVIDER_HOSTS`: ``OPENAI_API_KEY`` -> ``api.openai.com``, ...) is sent only to that
   provider's host — unless the user named the variable *for this endpoint*. Named for this
   endpoint means given where that one endpoint is given:

   - ``gekro-ft bench --api-key-env VAR`` (one ``--url`` per run);
   - ``gekro-ft eval --candidate-key-env VAR`` / ``--baseline-key-env VAR`` for that side;
   - ``openai:MODEL`` for ``OPENAI_API_KEY``: the spec names OpenAI, and ``OPENAI_BASE_URL``
     (OpenAI's own client reads the pair the same way) is where the user put OpenAI; likewise
     ``anthropic:MODEL`` for ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` (also how a price
     table entry's ``ask`` reaches its API in ``gekro-ft batch estimate``);
   - a serving profile's ``api_key_env``, for the server started from it (the pipeline's bench).

   Not named for this endpoint: a default (``bench`` without ``--api-key-env`` tries
   ``OPENAI_API_KEY``) and an eval suite's ``endpoint.api_key_env``, which applies to whichever
   side is an endpoint. There a provider's key for another host is simply not sent: the
   request goes without a key (a server that wants one answers 401 and the error says so).
   A variable not named for any provider (``GEKRO_FT_API_KEY``) goes to the endpoint it is
   configured for.
2. **No key in clear text off this machine.** A key is never sent over plain ``http://`` to a
   host other than a loopback address (127.0.0.0/8, ``::1``, ``localhost``), however it was
   named: :class:`~gekro_ft.errors.KeyRefusedError` (exit 2) before any request. Use
   ``https://``, or reach the server through 127.0.0.1 (an SSH tunnel).
3. **Keys never appear in messages**: errors name the variable, never its value, and show URLs
   without a ``user:password@`` part (:func:`public_url`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from gekro_ft.errors import KeyRefusedError

# The variable a provider's documentation tells users to set -> the hosts that key belongs to.
PROVIDER_HOSTS: dict[str, frozenset[str]] = {
    "OPENAI_API_KEY": frozenset({"api.openai.com"}),
    "ANTHROPIC_API_KEY": frozenset({"api.anthropic.com"}),
    "GEMINI_API_KEY": frozenset({"generativelanguage.googleapis.com"}),
    "GOOGLE_API_KEY": frozenset({"generativelanguage.googleapis.com"}),
    "MISTRAL_API_KEY": frozenset({"api.mistral.ai"}),
    "GROQ_API_KEY": frozenset({"api.groq.com"}),
    "TOGETHER_API_KEY": frozenset({"api.together.xyz"}),
    "DEEPSEEK_API_KEY": frozenset({"api.deepseek.com"}),
    "OPENROUTER_API_KEY": frozenset({"openrouter.ai"}),
}

# The APIs a spec ``PROVIDER:MODEL`` names (eval's providers, the price table's ``ask``), reached
# through their OpenAI-compatible chat endpoint: provider -> (default base URL, the variable that
# moves it, the variable holding its key), the variables as the provider's own client names them.
PROVIDER_ENDPOINTS: dict[str, tuple[str, str, str]] = {
    "openai": ("https://api.openai.com/v1", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "anthropic": ("https://api.anthropic.com/v1", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
}


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def public_url(url: str) -> str:
    """``url`` without a user:password part, which must not land in messages or reports."""
    parts = urlsplit(url.strip())
    if parts.username is None and parts.password is None:
        return url.strip()
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def may_send(env: str, url: str, explicit: bool) -> bool:
    """Rule 1: whether the key in ``env`` may go to ``url``. ``explicit``: the user named ``env``
    for this endpoint (see the module docstring)."""
    hosts = PROVIDER_HOSTS.get(env)
    return explicit or hosts is None or (urlsplit(url.strip()).hostname or "") in hosts


def check_transport(url: str, env: str) -> None:
    """Rule 2: refuse to send a key over plain HTTP to another machine."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() == "https" or is_loopback(parts.hostname or ""):
        return
    raise KeyRefusedError(f"refusing to send the API key in {env} to {public_url(url)}: plain http:// "
                          "to another machine carries it in clear text",
                          hint="use https://, reach the server through 127.0.0.1 (an SSH tunnel), "
                               "or send no key")


def send_key(url: str, env: str | None, *, explicit: bool,
             environ: Mapping[str, str] | None = None) -> str | None:
    """The key to send with requests to ``url``, or None to send none: no variable, an unset or
    empty one, or a provider's key for another host that the user did not name for this
    endpoint. Raises :class:`~gekro_ft.errors.KeyRefusedError` where rule 2 forbids it."""
    key = (os.environ if environ is None else environ).get(env) if env else None
    if not key or not may_send(env, url, explicit):
        return None
    check_transport(url, env)
    return key
