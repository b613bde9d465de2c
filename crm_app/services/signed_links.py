"""Short-lived signed links: the one place that decides whether a link may be served.

A page's state signs what the link is for (the export's filter, who asked) with HMAC-SHA256 and the
app's secret (settings.secret_key, CRM_SECRET_KEY); the backend route checks the signature and the
expiry before it serves anything. A link also names the sign-in session it was made in; the route
serves it only while that session is signed in and its user active (accounts.session_is_live).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

from crm_app.services.errors import ServiceError
from crm_app.settings import settings

LINK_LIFETIME = timedelta(minutes=5)


class InvalidLink(ServiceError):
    """A link that was tampered with, is for something else, or has expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(body: str, key: bytes) -> str:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def sign_link(purpose: str, payload: dict[str, Any], *, now: datetime, lifetime: timedelta = LINK_LIFETIME,
              key: bytes | None = None) -> str:
    """A token carrying `payload` for `purpose`, valid for `lifetime` from `now`."""
    body = _b64(json.dumps({"for": purpose, "until": (now + lifetime).timestamp(), "data": payload},
                           separators=(",", ":")).encode())
    return f"{body}.{_mac(body, key or settings.secret_key)}"


def verify_link(purpose: str, token: str, *, now: datetime, key: bytes | None = None) -> dict[str, Any]:
    """The payload of a valid token for `purpose`; raises InvalidLink otherwise."""
    body, _, mac = (token or "").partition(".")
    if not body or not hmac.compare_digest(mac.encode(), _mac(body, key or settings.secret_key).encode()):
        raise InvalidLink("This link is not valid. Export again from the Leads page.")
    try:
        claims = json.loads(_unb64(body))
    except ValueError:
        raise InvalidLink("This link is not valid. Export again from the Leads page.") from None
    if claims.get("for") != purpose:
        raise InvalidLink("This link is for something else.")
    if now.timestamp() > float(claims.get("until", 0)):
        raise InvalidLink("This link has expired (links last 5 minutes). Export again from the Leads page.")
    return claims.get("data") or {}
