"""`POST /api/v1/driver/locations` ahead of Django (config/asgi.py): the hottest route, a ping every 4 s per
online driver, answered on the event loop without Django's request cycle (thread hop, middleware, DRF, two
reads per request), which cost ~5 ms of CPU around ~0.5 ms of Redis work.

The fast path takes only the plain case of API.md's contract: a JSON batch that the lean validator below accepts, a
`Token` of an online driver known to drivers/credentials.py, no `Idempotency-Key`, no NUL in the query string, an
allowed host over an accepted scheme, and a user under the API's throttle. It then does what the Django view does,
in two Redis round trips: (1) the throttle's check and record (core/throttling.py: the API's own command on the
API's own key, so both paths share one budget) and the user's credential version; (2) the location index commands.
Each round trip is shared with the other pings of the same turn of the event loop, or of the time the previous
pipeline was out (`locations.RoundTrip`, as the driver sockets' pings): under load one pipeline serves many
requests. Everything else —
bad input, unknown or revoked tokens, other roles, offline drivers, a throttled user, an idempotent retry,
Redis trouble — goes to Django with the body replayed, so its answers (error shapes included) stay exactly the
API's. Embedded mode (no Redis) sends everything to Django.
"""

import re
import time
from dataclasses import replace
from datetime import datetime

import orjson
import redis
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from core import throttling
from core.throttling import UserThrottle
from drivers import credentials, locations, trail

PATH = "/api/v1/driver/locations"
MAX_POINTS = 100
MAX_BODY = 256 * 1024  # larger bodies (far beyond 100 points) go to Django, which answers them
_ISO_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


# --- the lean validator: exact for the plain case; anything else is left to the DRF serializers -------------
def _number(value, low: float, high: float | None) -> bool:
    return type(value) in (int, float) and low <= value and (high is None or value <= high)


def _optional(value, low: float, high: float | None) -> bool:
    return value is None or _number(value, low, high)


def parse_point(raw) -> locations.Point | None:
    """A point of API.md in its plain form (numbers as JSON numbers, recorded_at ISO 8601 with an offset), or
    None when it is not that: then drivers.api.PointInput decides (it also accepts numeric strings and other
    datetime forms, and words the errors)."""
    if type(raw) is not dict:
        return None
    lat, lng, recorded_at = raw.get("lat"), raw.get("lng"), raw.get("recorded_at")
    accuracy, speed, heading = raw.get("accuracy"), raw.get("speed"), raw.get("heading")
    if not (
        _number(lat, -90, 90)
        and _number(lng, -180, 180)
        and type(recorded_at) is str
        and _ISO_DATETIME.fullmatch(recorded_at)
        and _optional(accuracy, 0, None)
        and _optional(speed, 0, None)
        and _optional(heading, 0, 360)
    ):
        return None
    try:
        at = datetime.fromisoformat(recorded_at)
    except ValueError:
        return None
    return locations.Point(
        float(lat),
        float(lng),
        at,
        None if accuracy is None else float(accuracy),
        None if speed is None else float(speed),
        None if heading is None else float(heading),
    )


def parse_batch(body: bytes) -> list[locations.Point] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    raw = data.get("points") if type(data) is dict else None
    if type(raw) is not list or not 1 <= len(raw) <= MAX_POINTS:
        return None
    points = [parse_point(point) for point in raw]
    return None if None in points else points


# --- the ASGI application --------------------------------------------------------------------------------
class LocationIngest:
    def __init__(self, django_app) -> None:
        self.django = django_app
        self._throttle: UserThrottle | None = None
        self._hosts: dict[bytes, bool] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or not self._enabled():
            return await self.django(scope, receive, send)
        body, complete = await _read_body(receive)
        answer = await self._fast(scope, body) if complete else None
        if answer is None:
            return await self.django(scope, _replay(body, complete, receive), send)
        headers = self._headers(_secure(scope, dict(scope["headers"])), len(answer))
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    @staticmethod
    def _enabled() -> bool:
        # One Redis for the index and the throttle cache (the default): both round trips go to one client.
        cache = settings.CACHES["default"]
        return bool(settings.RELAY_LOCATION_REDIS_URL) and (
            cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
            and cache.get("LOCATION") == settings.RELAY_LOCATION_REDIS_URL
        )

    async def _fast(self, scope, body: bytes) -> bytes | None:
        headers = dict(scope["headers"])
        token = self._token(scope, headers)
        if token is None:
            return None
        points = parse_batch(body)
        client = locations.async_client()
        if points is None or client is None:
            return None
        entry = cached = credentials.cache.get(token)
        if entry is None:
            entry = await credentials.aload(token)
            if entry is None or not entry.online:
                return None  # not a driver, revoked, or offline: the full API answers
        throttle = self._throttle or self._make_throttle()
        throttle_key = throttle.cache_format % {"scope": throttle.scope, "ident": entry.user_id}
        version_key, carried_key = credentials.version_key(entry.user_id), trail.carried_key(entry.driver_id)
        round_trip = client.relay_round_trip  # shared with the other pings (RoundTrip)
        now = time.time()

        def read(pipe) -> None:  # few commands: ~25 µs each
            throttling.check(pipe, throttle_key, now, throttle.duration, throttle.num_requests)
            pipe.get(version_key).hgetall(carried_key)

        try:
            (allowed, *_), version, carried = await round_trip.execute(read)
            version = version.decode() if version is not None else None
            if cached is not None and entry.version == version:
                credentials.keep_fresh(token, entry)
            else:
                if cached is not None:  # the version moved: read again
                    entry = await credentials.aload(token)
                    if entry is None or not entry.online:
                        credentials.cache.drop(token)
                        return None
                # Just read from the database; a bump between that read and this one is caught by the TTL.
                entry = replace(entry, version=version)
                credentials.cache.put(token, entry)
            if not allowed:
                return None  # throttled: DRF answers 429 with its Retry-After
            usable = locations.usable_points(points)
            newest = await locations.anewest(usable) if usable else None
            pushes: list[trail.Step] = []

            def queue(pipe) -> None:
                if newest is not None:
                    locations.queue_position(pipe, entry.driver_id, *newest)
                pushes.extend(trail.follow_on(pipe, entry.driver_id, carried, usable))

            results = await round_trip.execute(queue)
        except _REDIS_ERRORS as exc:
            locations.redis_failed(exc)
            return None  # Django records the batch through the database fallback
        await trail.apush(pushes, results)
        accepted = len(usable)
        return orjson.dumps({"accepted": accepted, "dropped": len(points) - accepted})

    def _make_throttle(self) -> UserThrottle:
        self._throttle = UserThrottle()
        return self._throttle

    def _token(self, scope, headers: dict) -> str | None:
        if b"idempotency-key" in headers or not headers.get(b"content-type", b"").startswith(b"application/json"):
            return None
        query = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            return None  # Django refuses a NUL in a query parameter (core.inputs.NullCharacterMiddleware)
        if settings.SECURE_SSL_REDIRECT and not _secure(scope, headers):
            return None
        host = headers.get(b"host", b"")
        allowed = self._hosts.get(host)
        if allowed is None:
            domain, _ = split_domain_port(host.decode("latin-1"))
            allowed = self._hosts[host] = bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
        if not allowed:
            return None
        parts = headers.get(b"authorization", b"").split()
        if len(parts) != 2 or parts[0].lower() != b"token":
            return None
        return parts[1].decode("latin-1")

    @staticmethod
    def _headers(secure: bool, length: int) -> list[tuple[bytes, bytes]]:
        """What the Django view's response carries (DRF's and the security middleware's headers)."""
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(length).encode()),
            (b"vary", b"Accept"),
            (b"allow", b"POST, OPTIONS"),
            (b"x-frame-options", settings.X_FRAME_OPTIONS.encode()),
            (b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()),
        ]
        if settings.SECURE_CONTENT_TYPE_NOSNIFF:
            headers.append((b"x-content-type-options", b"nosniff"))
        if settings.SECURE_REFERRER_POLICY:
            headers.append((b"referrer-policy", settings.SECURE_REFERRER_POLICY.encode()))
        if settings.SECURE_HSTS_SECONDS and secure:
            hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
            if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
                hsts += "; includeSubDomains"
            if settings.SECURE_HSTS_PRELOAD:
                hsts += "; preload"
            headers.append((b"strict-transport-security", hsts.encode()))
        return headers


def _secure(scope, headers: dict) -> bool:
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode()
        return headers.get(name, b"").split(b",")[0].strip() == proxy[1].encode()
    return scope.get("scheme") == "https"


async def _read_body(receive) -> tuple[bytes, bool]:
    """The request body, unless it is larger than MAX_BODY (then what was read, and False)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BODY:
            return b"".join(chunks), False


def _replay(body: bytes, complete: bool, receive):
    """A `receive` for Django that first hands back what was already read."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": not complete}

    return replay
