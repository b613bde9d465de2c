"""What every HTTP answer of the app carries, and who is asking.

- `client_address`: the address a request came from, as Reflex's own websocket sees it: the socket's
  peer, or, behind reverse proxies (Reflex's `trusted_proxy_hops`, REFLEX_TRUSTED_PROXY_HOPS), the
  address that many hops back in X-Forwarded-For. Throttles count per this address.
- `SecurityHeaders`: ASGI middleware around the whole app (pages, websocket, API, export) that adds
  the Content-Security-Policy, frame and MIME-sniffing protections to every answer, and refuses a
  websocket opened from another site's page (cross-site websocket hijacking: the session cookie
  travels with the handshake).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}


def _trusted_proxy_hops() -> int:
    from reflex.config import get_config

    return int(get_config().trusted_proxy_hops or 0)


def client_address(scope: Scope) -> str:
    """The client's address (at most 64 characters), "unknown" when the server does not say."""
    address = (scope.get("client") or ("unknown",))[0] or "unknown"
    hops = _trusted_proxy_hops()
    if hops:
        forwarded = [ip.strip() for ip in _headers(scope).get("x-forwarded-for", "").split(",") if ip.strip()]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    return str(address)[:64]
