"""Celery tasks of the platform plumbing."""

from celery import shared_task

from core import ws


@shared_task
def recheck_socket_credentials() -> None:
    """Every 30 s (beat): each server process checks the token or session of its open sockets again (its driver
    sockets in one query), so one whose token was revoked or expired, or whose user was deactivated, closes
    within a minute."""
    ws.recheck_socket_credentials()
