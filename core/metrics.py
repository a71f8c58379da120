"""Process-local counters, exposed at /metrics in Prometheus text format."""

import threading
from collections import defaultdict

_lock = threading.Lock()
_counters: dict[str, float] = defaultdict(float)
_help: dict[str, str] = {}


def describe(name: str, help_text: str) -> None:
    _help[name] = help_text


def inc(name: str, amount: float = 1.0) -> None:
    with _lock:
        _counters[name] += amount


def value(name: str) -> float:
    with _lock:
        return _counters[name]


def snapshot() -> dict[str, float]:
    with _lock:
        return dict(_counters)


def render_prometheus() -> str:
    lines = []
    for name, amount in sorted(snapshot().items()):
        if name in _help:
            lines.append(f"# HELP {name} {_help[name]}")
        lines.append(f"# TYPE {name} counter")
        lines.append(f"{name} {amount}")
    return "\n".join(lines) + "\n"
