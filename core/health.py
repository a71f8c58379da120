"""What load balancers and the readiness check ask: can this process reach the database, Redis and the broker?"""

import redis
from django.conf import settings
from django.db import connection
from prometheus_client.core import GaugeMetricFamily

TIMEOUT_S = 1.0


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def redis_ok() -> bool | None:
    """None when there is no Redis (embedded mode)."""
    if not settings.REDIS_URL:
        return None
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        with client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def broker_ok() -> bool:
    from celery import current_app

    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=TIMEOUT_S)
        return True
    except Exception:
        return False


def readiness() -> dict[str, bool]:
    checks = {"database": database_ok(), "broker": broker_ok()}
    if (up := redis_ok()) is not None:
        checks["redis"] = up
    return checks


def collect_redis_up():
    """`relay_redis_up` (1 reachable, 0 not) at each scrape; absent in embedded mode (no Redis)."""
    up = redis_ok()
    if up is not None:
        gauge = GaugeMetricFamily("relay_redis_up", "Whether Redis answered a PING at this scrape")
        gauge.add_metric([], 1 if up else 0)
        yield gauge
