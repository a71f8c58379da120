"""Celery tasks of the platform plumbing."""

from celery import shared_task

from core import ws


@shared_task
def recheck_socket_credentials() -> None:
    """Every 30 s (beat): each open socket checks its token or session again, so one whose token was revoked
    or expired, or whose user was deactivated, closes within a minute."""
    ws.recheck_socket_credentials()
