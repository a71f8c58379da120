"""Rate limits that fail open: throttling state lives in the cache (Redis in production), and a Redis outage
must not turn every API call into an error while dispatch itself carries on without Redis."""

import logging

from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from core import metrics

log = logging.getLogger(__name__)
THROTTLE_FAILURES = "relay_throttle_cache_failures_total"
metrics.describe(THROTTLE_FAILURES, "Requests let through unthrottled because the throttle cache failed")


class _FailOpen:
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # any cache backend error: let the request through, loudly
            metrics.inc(THROTTLE_FAILURES)
            log.warning("throttle cache unavailable (%s); request not throttled", exc)
            return True


class UserThrottle(_FailOpen, UserRateThrottle):
    pass


class LoginThrottle(_FailOpen, AnonRateThrottle):
    rate = "30/min"
