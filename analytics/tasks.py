"""Celery tasks of the analytics app: safe to run twice (the rollup replaces a day's rows)."""

from celery import shared_task

from analytics.retention import purge_rolled_up_snapshots
from analytics.rollup import roll_up_recent_days


@shared_task
def roll_up_kpis_task() -> int:
    return roll_up_recent_days()


@shared_task
def purge_old_zone_snapshots() -> int:
    return purge_rolled_up_snapshots()
