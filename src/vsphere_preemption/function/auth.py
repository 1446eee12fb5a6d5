"""The optional bearer token on the event endpoint (FUNCTION_TOKEN_FILE), for brokers that
can send one. Health and metrics stay open: probes and scrapers carry no token."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

# What a refused request is answered, in the function's one-line JSON error shape.
UNAUTHORIZED = "missing or wrong bearer token (Authorization: Bearer <token>)"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="vsphere-preemption"'}


def authorized(headers: Mapping[str, str], token: bytes | None) -> bool:
    """True when no token is configured, or `headers` carry `Authorization: Bearer <token>`.

    Compared in constant time: how long a refusal takes says nothing of the token."""
    if token is None:
        return True
    scheme, _, given = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token)
