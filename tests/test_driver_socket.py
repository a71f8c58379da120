"""`/ws/driver/`: only a valid driver token joins, and only its own stream."""

import pytest
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from config.asgi import application
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


async def _connect(token: str):
    communicator = WebsocketCommunicator(application, f"/ws/driver/?token={token}")
    connected, code = await communicator.connect()
    return communicator, connected, code


def _token_for(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


async def test_refuses_missing_wrong_and_non_driver_tokens(zones):
    from channels.db import database_sync_to_async

    merchant_token = await database_sync_to_async(lambda: _token_for(factories.MerchantFactory().user))()
    for token in ("", "not-a-token", merchant_token):
        communicator, connected, code = await _connect(token)
        assert not connected
        assert code == 4401
        await communicator.disconnect()


async def test_a_driver_joins_its_own_stream(zones):
    from channels.db import database_sync_to_async

    driver = await database_sync_to_async(factories.DriverFactory)()
    token = await database_sync_to_async(_token_for)(driver.user)
    communicator, connected, _ = await _connect(token)
    assert connected
    await communicator.send_json_to({"type": "bogus"})
    reply = await communicator.receive_json_from()
    assert reply["type"] == "error" and reply["data"]["code"] == "unknown_type"
    await communicator.disconnect()
