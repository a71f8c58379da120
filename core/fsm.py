"""django-fsm-2's model mixin, made safe for threads."""

import threading

import django_fsm

# Held only around a refresh: a plain SELECT, which never waits on row locks.
_refresh_lock = threading.Lock()


class FSMModelMixin(django_fsm.FSMModelMixin):
    """`refresh_from_db` for models with protected FSM fields, safe when threads refresh at once.

    django-fsm-2's own turns the `protected` flag off and back on on the field objects, which every thread
    shares: under the ASGI server (one thread per request) another thread's refresh turns it back on mid-way and
    this one fails with "Direct status modification is not allowed" (seen as 500s on POST /api/v1/deliveries
    under load). Refreshes are therefore taken one at a time.
    """

    def refresh_from_db(self, *args, **kwargs) -> None:
        with _refresh_lock:
            super().refresh_from_db(*args, **kwargs)
