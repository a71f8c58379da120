"""Transactions and locks: an action locks only the rows it changes (the delivery lock takes the delivery row,
not the merchant and zone rows it joins, which made one zone's deliveries queue behind each other, as the
benchmarks found) and commits on its own, never inside a caller's transaction."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core.audit import Actor
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services.common import lock_delivery
from deliveries.services.progress import cancel_delivery
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.postgres
def test_lock_delivery_locks_only_the_delivery_row(merchant_api):
    created = merchant_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json").json()
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        lock_delivery(created["id"])
    sql = queries.captured_queries[-1]["sql"]
    assert 'FOR UPDATE OF "deliveries_delivery"' in sql, sql


def test_an_action_refuses_to_run_inside_a_callers_transaction(merchant_api):
    """Actions commit their change, audit and side effects as one: nested in someone else's transaction, a
    rollback there would undo an audited, announced change (building blocks are the `*_locked` functions)."""
    created = merchant_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json").json()
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        cancel_delivery(created["id"], actor=Actor.system("test"), reason="nested")
    assert Delivery.objects.get(pk=created["id"]).status == DeliveryStatus.PENDING
