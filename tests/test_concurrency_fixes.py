"""A fix found by the benchmarks (BENCHMARKS.md): the delivery lock takes the delivery row only, not the
merchant and zone rows it joins (which made one zone's deliveries queue behind each other)."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

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
