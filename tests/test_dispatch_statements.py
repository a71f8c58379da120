"""What creating and dispatching a delivery, and accepting its offer, cost in SQL statements (issue 12: the
server's CPU per dispatch is mostly the ORM building and reading statements). A count, not a timing: a change
that adds a statement to these paths fails here and says which ones ran, so it is a decision, not a drift."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.audit import Actor
from deliveries import eta
from deliveries.models import Delivery, Offer, OfferStatus
from deliveries.services.offers import accept_offer
from drivers.models import Driver
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

# The statements each action sends, BEGIN and COMMIT aside (in a test they are the savepoints left out below).
# On PostgreSQL a driver's message is numbered and stored in one statement; elsewhere in two.
CREATE_AND_DISPATCH = {"postgresql": 8}.get(connection.vendor, 9)
# An assignment's ETA uses what was learned of the zone's speeds and errors, read once and then kept a minute
# (deliveries/eta.py): a process that already assigned one in the zone reads them no more. Without that, 2 more.
ACCEPT = {"postgresql": 10}.get(connection.vendor, 11)
# A driver with room left stays available: no state change to save, and a missed-offer count of 0 is not written.
ACCEPT_WITH_ROOM_LEFT = ACCEPT - 1


def _statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


def _listing(sql: list[str]) -> str:
    return "\n".join(f"  {statement[:160]}" for statement in sql)


@pytest.fixture
def dispatched(merchant, clock):
    """Two candidates in reach, one delivery dispatched already (the zone list and other caches are warm); every
    statement of the second's create and dispatch."""
    for km in (0.4, 0.6, 0.8):
        factories.online_driver(*factories.east(km))
    factories.new_delivery(merchant, "warm-up")
    with CaptureQueriesContext(connection) as queries:
        delivery = factories.new_delivery(merchant, "measured")
    assert delivery.status == "offered"
    return delivery, [q["sql"] for q in queries.captured_queries]


@pytest.fixture
def offered(dispatched):
    delivery, sql = dispatched
    return delivery, [statement for statement in sql if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


def test_the_offer_is_inserted_without_a_savepoint_of_its_own(dispatched):
    """The one-pending-offer constraints may refuse the offer (another dispatch offered the driver first): the
    insert says so itself (ON CONFLICT DO NOTHING) rather than in a savepoint, two round trips more. In a test
    the action's own transaction is a savepoint too: that one, and no other."""
    _, sql = dispatched
    assert sum(statement.startswith("SAVEPOINT") for statement in sql) == 1, _listing(sql)


def test_create_and_dispatch_send_a_fixed_number_of_statements(offered):
    _, sql = offered
    assert len(sql) == CREATE_AND_DISPATCH, _listing(sql)


def test_the_events_of_a_dispatch_are_one_insert(offered):
    _, sql = offered
    assert sum(statement.startswith('INSERT INTO "core_auditevent"') for statement in sql) == 1, _listing(sql)


@pytest.mark.parametrize(("capacity", "expected"), [(1, ACCEPT), (2, ACCEPT_WITH_ROOM_LEFT)])
def test_accepting_an_offer_sends_a_fixed_number_of_statements(offered, capacity, expected):
    delivery, _ = offered
    _accept_the_warm_up_offer(delivery)
    offer = factories.pending_offer(delivery)
    Driver.objects.filter(pk=offer.driver_id).update(capacity=capacity)
    actor = Actor.driver(offer.driver)
    with CaptureQueriesContext(connection) as queries:
        accept_offer(offer.pk, actor=actor)
    sql = _statements(queries)
    assert len(sql) == expected, _listing(sql)


def _accept_the_warm_up_offer(measured) -> None:
    """The fixture's first delivery, accepted: the zone's learned speeds and errors are then in memory."""
    warm_up = Offer.objects.filter(status=OfferStatus.PENDING).exclude(delivery=measured).get()
    accept_offer(warm_up.pk, actor=Actor.driver(warm_up.driver))


def test_an_assignment_reads_what_was_learned_again_after_a_delivery_taught_more(offered, merchant):
    """The kept speeds and errors are dropped when this process learns from a delivery: the next assignment
    reads them again, so what was just learned is used at once."""
    delivery, _ = offered
    _accept_the_warm_up_offer(delivery)
    finished = Delivery.objects.get(pk=delivery.pk)  # as if delivered: 10 minutes from pickup to the door
    finished.finished_at = timezone.now()
    finished.picked_up_at = finished.finished_at - timedelta(minutes=10)
    eta.learn_from_delivery_locked(finished, vehicle="bicycle")
    offer = factories.pending_offer(delivery)
    with CaptureQueriesContext(connection) as queries:
        accept_offer(offer.pk, actor=Actor.driver(offer.driver))
    sql = _statements(queries)
    assert sum('FROM "deliveries_travelspeed"' in statement for statement in sql) == 1, _listing(sql)
    assert sum('"eta_error_s" IS NOT NULL' in statement for statement in sql) == 1, _listing(sql)
