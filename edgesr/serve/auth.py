"""Who may reach the service: loopback only, unless every request carries a bearer token."""

import hmac
import ipaddress

from edgesr.errors import EdgesrError


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or "localhost") is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen on an address other machines reach unless a token guards it."""
    if not is_loopback(host) and not token:
        raise EdgesrError(f"refusing to listen on {host} without a token: anyone on the network "
                          "could use this machine; pass --token (or set EDGESR_TOKEN), or bind "
                          "127.0.0.1")


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as a bearer token (constant-time
    compare); everything passes when no token is configured."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())
