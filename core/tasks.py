"""Celery tasks of the platform plumbing."""

from importlib import import_module

from celery import shared_task
from django.conf import settings

from core import ws


@shared_task
def recheck_socket_credentials() -> None:
    """Every 30 s (beat): each server process checks the token or session of its open sockets again (its driver
    sockets in one query), so one whose token was revoked or expired, or whose user was deactivated, closes
    within a minute."""
    ws.recheck_socket_credentials()


@shared_task
def clear_expired_sessions() -> None:
    """Daily (beat): console sessions past their day (SESSION_COOKIE_AGE) are deleted. Django leaves that to its
    `clearsessions` command, which nothing ran: every staff login that was not logged out kept its row for good."""
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
