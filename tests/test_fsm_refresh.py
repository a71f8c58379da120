"""`refresh_from_db` on models with a protected FSM state, from several threads at once (the ASGI server runs
each request in its own thread): django-fsm-2's version flips the shared field's `protected` flag, so one
thread's refresh failed with "Direct state modification is not allowed" while another's was running."""

import threading

import pytest
from django.db import connection

from drivers.models import Driver, DriverState
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def test_refresh_reloads_a_protected_state_changed_elsewhere(zones):
    driver = factories.DriverFactory()
    Driver.objects.filter(pk=driver.pk).update(state=DriverState.AVAILABLE)
    driver.refresh_from_db()
    assert driver.state == DriverState.AVAILABLE
    assert Driver._meta.get_field("state").protected
    with pytest.raises(AttributeError):
        driver.state = DriverState.OFFLINE


def test_concurrent_refreshes_do_not_fail(zones):
    driver = factories.DriverFactory()
    errors: list[Exception] = []
    start = threading.Barrier(8)

    def refresh_many():
        try:
            copy = Driver.objects.get(pk=driver.pk)
            start.wait()
            for _ in range(50):
                copy.refresh_from_db()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=refresh_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
