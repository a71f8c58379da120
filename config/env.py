"""Typed readers for environment variables: a bad value stops the process with a clear message."""

import os
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_optional_int(name: str, default: int | None) -> int | None:
    """An integer, or None for `none` / `off`."""
    raw = os.environ.get(name)
    if raw is not None and raw.strip().lower() in ("none", "off"):
        return None
    return env_int(name, default)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, schemes: set[str], default: str = "") -> str:
    raw = os.environ.get(name, default).strip()
    if raw and raw.split("://", 1)[0] not in schemes:
        raise ImproperlyConfigured(f"{name} must start with one of {sorted(schemes)}://, got {raw!r}")
    return raw


def redis_db(url: str) -> str:
    """The database number of a Redis URL (`redis://host:port/N`, `unix:///path?db=N`; 0 when not given)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parse_qs(parts.query).get("db", ["0"])[0]
    return parts.path.strip("/") or "0"


def origin_source(url: str, *, scheme: str = "") -> str:
    """The Content-Security-Policy source of a URL's origin (`https://tile.example.com`), in `scheme` if given. A
    Leaflet template's `{s}` subdomain becomes the policy's `*` wildcard."""
    parts = urlsplit(url)
    return f"{scheme or parts.scheme}://{parts.netloc.replace('{s}', '*')}"
