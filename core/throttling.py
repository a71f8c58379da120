"""Rate limits that fail open: throttling state lives in the cache (Redis in production), and a Redis outage
must not turn every API call into an error while dispatch itself carries on without Redis."""

import logging

from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

from core import metrics

log = logging.getLogger(__name__)
THROTTLE_FAILURES = metrics.counter(
    "relay_throttle_cache_failures_total", "Requests let through unthrottled because the throttle cache failed"
)


class _FailOpen:
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # any cache backend error: let the request through, loudly
            THROTTLE_FAILURES.inc()
            log.warning("throttle cache unavailable (%s); request not throttled", exc)
            return True


class UserThrottle(_FailOpen, UserRateThrottle):
    pass


class AddressThrottle(_FailOpen, SimpleRateThrottle):
    """Requests per client address (NUM_PROXIES decides which address that is), whoever is logged in."""

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginAddressThrottle(AddressThrottle):
    """Login attempts per client address."""

    scope = "login"


class TrackAddressThrottle(AddressThrottle):
    """The public tracking JSON per client address: its token is its only credential."""

    scope = "track"


class LoginUsernameThrottle(_FailOpen, SimpleRateThrottle):
    """Login attempts per username, from any number of addresses: guessing one account's password from many
    machines is limited too."""

    scope = "login_username"
    username = ""

    def allow_request(self, request, view) -> bool:
        # Read outside the fail-open guard: a body that does not parse is the client's error (400), not the cache's.
        self.username = _username(request)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str | None:
        if not self.username:
            return None  # the serializer or the form refuses it
        return self.cache_format % {"scope": self.scope, "ident": self.username.strip().lower()[:150]}


def _username(request) -> str:
    # A DRF request carries the JSON body in .data; the admin's login form is a plain Django request.
    body = request.data if hasattr(request, "data") else request.POST
    username = body.get("username") if hasattr(body, "get") else None
    return username if isinstance(username, str) else ""


LOGIN_THROTTLES = [LoginAddressThrottle, LoginUsernameThrottle]


def login_wait(request) -> float | None:
    """For a login outside DRF (the admin's form): None when it may go ahead, else the seconds to wait.
    Every throttle records the attempt, as DRF's own check does."""
    waits = []
    for throttle in (cls() for cls in LOGIN_THROTTLES):
        if not throttle.allow_request(request, None):
            waits.append(throttle.wait() or 0)
    return max(waits) if waits else None
