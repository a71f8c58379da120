"""core.compiled: a read compiled once per shape answers every later call with that call's values, exactly as
the queryset it was compiled from (on SQLite too: the ORM's converters still apply)."""

import pytest

from core.compiled import CompiledRead
from drivers.models import Driver
from tests import factories

pytestmark = pytest.mark.django_db


def _drivers(ids):
    return Driver.objects.filter(pk__in=ids).values_list("pk", "name", "state_changed_at").order_by("name")


def test_a_compiled_read_answers_each_call_with_its_own_values(zones):
    read = CompiledRead(Driver, _drivers)
    a, b, c = (factories.DriverFactory() for _ in range(3))
    for ids in ([a.pk, b.pk], [b.pk, c.pk], [str(c.pk), str(a.pk)], [b.pk]):  # two shapes, the first one reused
        assert read(ids) == list(_drivers(ids))


def test_a_list_argument_must_not_be_empty(zones):
    with pytest.raises(ValueError):
        CompiledRead(Driver, _drivers)([])
