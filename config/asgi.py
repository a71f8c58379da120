import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry loaded above)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from core.asgi_http import ASGIHandler  # noqa: E402
from core.lifespan import lifespan  # noqa: E402
from core.ws import BrowserOriginValidator, UnknownPath  # noqa: E402
from deliveries.consumers import OpsConsumer, TrackConsumer  # noqa: E402
from drivers.consumers import DriverConsumer  # noqa: E402
from drivers.ingest import LocationIngest  # noqa: E402

# Driver sockets authenticate by token only (drivers never have a session): their scope carries none of the
# session and user middleware's lazy objects, which every one of the thousands of them would keep.
websocket_urls = [
    path("ws/driver/", DriverConsumer.as_asgi()),
    re_path(
        r"",
        AuthMiddlewareStack(
            URLRouter(
                [
                    path("ws/ops/", OpsConsumer.as_asgi()),
                    path("ws/track/<str:token>/", TrackConsumer.as_asgi()),
                    re_path(r"", UnknownPath.as_asgi()),  # last: refuse the rest cleanly, not "No route found" (a 500)
                ]
            )
        ),
    ),
]

django_asgi_app = ASGIHandler()

application = ProtocolTypeRouter(
    {
        # Location pings, the hottest route, are answered ahead of Django when they are plain (drivers/ingest.py).
        "http": LocationIngest(django_asgi_app),
        "websocket": BrowserOriginValidator(URLRouter(websocket_urls)),
        "lifespan": lifespan,
    }
)

# What the imports above allocated (Django's app registry, models, URL patterns, the libraries' modules) lives as
# long as the process. Frozen, it is left out of every garbage collection: a full collection of a server process
# otherwise walks all of it, pausing every request and socket of the process ~70 ms (BENCHMARKS.md, round 7).
gc.freeze()
