"""core.compiled: a read compiled once per shape answers every later call with that call's values, exactly as
the queryset it was compiled from (on SQLite too: the ORM's converters still apply); and the token read built
on it gives what select_related gave, in one query."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import DataError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from rest_framework.authtoken.models import Token

from core import compiled
from core.compiled import CompiledRead
from core.permissions import role_of
from core.tokens import _with_user, expires_at
from drivers.models import Driver
from drivers.services import lock_driver
from tests import factories

pytestmark = pytest.mark.django_db


def _drivers(ids):
    return Driver.objects.filter(pk__any=ids).values_list("pk", "name", "state_changed_at").order_by("name")


def test_a_compiled_read_answers_each_call_with_its_own_values(zones):
    read = CompiledRead(Driver, _drivers, ([compiled.UUID],))
    a, b, c = (factories.DriverFactory() for _ in range(3))
    for ids in ([a.pk, b.pk], [b.pk, c.pk], [str(c.pk), str(a.pk)], [b.pk]):  # two shapes, the first one reused
        assert read(ids) == list(_drivers(ids))


def test_an_empty_list_is_no_rows_without_a_query(zones, django_assert_num_queries):
    factories.DriverFactory()
    with django_assert_num_queries(0):
        assert CompiledRead(Driver, _drivers, ([compiled.UUID],))([]) == []


def test_lists_of_any_length_filter_and_exclude_as_the_queryset_does(zones):
    def named_except(names, exclude):
        return Driver.objects.filter(name__any=names).exclude(pk__any=exclude).values_list("name").order_by("name")

    read = CompiledRead(Driver, named_except, ([compiled.TEXT], [compiled.UUID]))
    a, b, c = (factories.DriverFactory() for _ in range(3))
    for names, exclude in (
        ([a.name, b.name, c.name], []),  # excluding no one excludes no one
        ([a.name, b.name], [a.pk]),
        ([a.name, a.name, c.name], [b.pk, c.pk]),  # a repeated value
        ([b.name], [a.pk, b.pk, c.pk]),
        ([], [a.pk]),
    ):
        assert read(names, exclude) == list(named_except(names, exclude)), (names, exclude)


def test_lists_of_up_to_n_values_make_log2_n_shapes_at_most(zones):
    """On PostgreSQL a list is one array parameter, one shape; elsewhere each value is a parameter and the list is
    padded up to a power of two, so a read of up to 1,000 tokens is compiled 10 times at most, not 1,000."""
    read = CompiledRead(Driver, _drivers, ([compiled.UUID],))
    drivers = [factories.DriverFactory() for _ in range(9)]
    for n in range(1, 10):
        ids = [d.pk for d in drivers[:n]]
        assert read(ids) == list(_drivers(ids))
    assert len(read._compiled) == (1 if connection.vendor == "postgresql" else 5)  # 1, 2, 4, 8, 16


def test_an_argument_used_twice_gets_its_value_in_both_places(zones):
    """A UNION whose parts filter on the same list (dispatch's reasoning read): each part gets the call's values,
    and a part that the list empties is left out as the ORM leaves it out."""

    def named_or_not(ids, names):
        found = Driver.objects.filter(pk__any=ids).order_by().values_list("name")
        others = Driver.objects.filter(name__any=names).exclude(pk__any=ids).order_by().values_list("name")
        return found.union(others, all=True)

    read = CompiledRead(Driver, named_or_not, ([compiled.UUID], [compiled.TEXT]))
    a, b, c = (factories.DriverFactory() for _ in range(3))
    for ids, names in (([a.pk], [b.name, c.name]), ([b.pk, c.pk], [a.name, b.name]), ([], [a.name, c.name])):
        assert sorted(read(ids, names)) == sorted(named_or_not(ids, names)), (ids, names)


@pytest.mark.postgres
def test_on_postgresql_a_list_argument_must_use_the_any_lookup(zones):
    read = CompiledRead(Driver, lambda ids: Driver.objects.filter(pk__in=ids).values_list("pk"), ([compiled.UUID],))
    with pytest.raises(ValueError, match="`any` lookup"):
        read([factories.DriverFactory().pk])


def test_a_list_of_uuids_may_mix_objects_and_their_text(zones):
    """On PostgreSQL a list of UUIDs is written as one array literal (core/postgresql/arrays.py): the same rows
    whether each is a UUID, its hyphenated text or its bare hex."""
    read = CompiledRead(Driver, _drivers, ([compiled.UUID],))
    drivers = [factories.DriverFactory() for _ in range(12)]
    ids = [[d.pk, str(d.pk), d.pk.hex][i % 3] for i, d in enumerate(drivers)]
    assert read(ids) == list(_drivers([d.pk for d in drivers]))
    assert read(ids[:5]) == list(_drivers([d.pk for d in drivers[:5]]))


@pytest.mark.parametrize("bad", ["not-a-uuid", "{}", '"', "A,B", "A},{B"])
def test_a_list_element_that_is_not_a_uuid_is_refused_never_read_as_other_elements(zones, bad):
    """Written into one array literal, an element holding two UUIDs must not become two elements."""
    a, b = factories.DriverFactory(), factories.DriverFactory()
    read = CompiledRead(Driver, _drivers, ([compiled.UUID],))
    with pytest.raises((ValueError, ValidationError, DataError)), transaction.atomic():
        read([bad.replace("A", str(a.pk)).replace("B", str(b.pk))])


def test_a_list_of_texts_matches_each_text_exactly_whatever_its_characters(zones):
    names = ["comma, inside", 'quote " inside', "back\\slash", "{braces}", " spaced ", "NULL", "", "café 🛵"]
    for name in names:
        factories.DriverFactory(name=name)
    factories.DriverFactory(name="comma")  # a part of one of them: never matched by it

    def named(names):
        return Driver.objects.filter(name__any=names).values_list("name").order_by("name")

    read = CompiledRead(Driver, named, ([compiled.TEXT],))
    assert read(names) == sorted((name,) for name in names)
    assert read(["comma", "NULL"]) == [("NULL",), ("comma",)]


def test_text_integer_and_datetime_arguments(zones, clock):
    a, b = factories.DriverFactory(capacity=2), factories.DriverFactory(capacity=3)

    def named(name, capacity, since):
        return Driver.objects.filter(name=name, capacity__gte=capacity, state_changed_at__gte=since).values_list("pk")

    read = CompiledRead(Driver, named, (compiled.TEXT, compiled.INTEGER, compiled.DATETIME))
    now = timezone.now()
    assert read(a.name, 2, now) == [(a.pk,)]
    assert read(b.name, 3, now) == [(b.pk,)]
    assert read(b.name, 4, now) == []
    assert read(b.name, 3, now + timedelta(seconds=1)) == []


@pytest.mark.parametrize("role", ["driver", "merchant", "ops"])
def test_a_token_is_read_with_its_user_and_role_in_one_query(zones, role, django_assert_num_queries):
    user = {
        "driver": lambda: factories.DriverFactory().user,
        "merchant": lambda: factories.MerchantFactory().user,
        "ops": factories.OpsUserFactory,
    }[role]()
    key = Token.objects.create(user=user).key
    with django_assert_num_queries(1):
        token = _with_user(key)
        assert (token.user.pk, token.user.username, role_of(token.user)) == (user.pk, user.username, role)
        assert expires_at(token) > token.created  # reads the role: no query either
    assert _with_user("no-such-key") is None


@pytest.mark.postgres  # SQLite has no row locks: there the ORM refuses nothing either
@pytest.mark.django_db(transaction=True)
def test_a_compiled_lock_outside_a_transaction_is_refused_as_the_orm_refuses_it(zones):
    # Compiled inside a transaction, the lock's SQL is reused: outside one, FOR UPDATE would lock nothing (the
    # statement commits at once), which the ORM refuses rather than let a caller believe it holds the row.
    driver = factories.DriverFactory()
    with transaction.atomic():
        assert lock_driver(driver.pk) == driver
    with pytest.raises(TransactionManagementError):
        lock_driver(driver.pk)
