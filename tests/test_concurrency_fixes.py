"""Two fixes found by the benchmarks (BENCHMARKS.md): the delivery lock takes the delivery row only, and
refreshing FSM models is safe when threads do it at once."""

import threading
import time

import pytest
from django.db import connection, models, transaction
from django.test.utils import CaptureQueriesContext

from deliveries.models import Delivery
from deliveries.services.common import lock_delivery
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.postgres
def test_lock_delivery_locks_only_the_delivery_row(merchant_api):
    created = merchant_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json").json()
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        lock_delivery(created["id"])
    sql = queries.captured_queries[-1]["sql"]
    assert 'FOR UPDATE OF "deliveries_delivery"' in sql, sql


def test_fsm_refresh_from_db_is_safe_across_threads(merchant_api, monkeypatch):
    created = merchant_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json").json()
    instances = [Delivery.objects.get(pk=created["id"]) for _ in range(2)]
    original = models.Model.refresh_from_db

    def slow_refresh(self, *args, **kwargs):
        # Widen the window in which django-fsm-2's own mixin had the field unprotected.
        time.sleep(0.05)
        self.status = "pending"  # what Django does with the fresh row: set the attribute

    monkeypatch.setattr(models.Model, "refresh_from_db", slow_refresh)
    errors = []

    def refresh(instance):
        try:
            for _ in range(3):
                instance.refresh_from_db()
        except AttributeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=refresh, args=(instance,)) for instance in instances]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # staggered: one refresh ends while the other is still running
    for thread in threads:
        thread.join(10)
    monkeypatch.setattr(models.Model, "refresh_from_db", original)
    assert errors == []
