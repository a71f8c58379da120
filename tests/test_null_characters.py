"""A NUL (%00) in a URL is refused as bad input or as what cannot exist, never a 500: PostgreSQL cannot compare
text holding one, so one that reached a query was a DataError (found by a black-box audit). The answers are the
same on every database."""

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db
NUL_REFUSED = ["Null characters are not allowed."]  # DRF's words for a NUL in a JSON body


def _client_of(role: str):
    make = {"merchant": factories.MerchantFactory, "driver": factories.DriverFactory, "ops": factories.OpsUserFactory}
    made = make[role]()
    return api_client_for(getattr(made, "user", made))


@pytest.mark.parametrize(
    ("role", "url", "parameter"),
    [
        ("merchant", "/api/v1/deliveries?status=%00", "status"),
        ("merchant", "/api/v1/deliveries?external_id=a%00b", "external_id"),
        ("driver", "/api/v1/driver/offers?status=%00", "status"),
        ("ops", "/api/v1/ops/kpis?from=2026-11-27&to=2026-11-27&zone=%00", "zone"),
        ("ops", "/api/v1/ops/escalations?open=true&x%00=1", "x\x00"),
    ],
)
def test_a_nul_in_a_query_parameter_is_a_400_naming_the_parameter(zones, role, url, parameter):
    response = _client_of(role).get(url)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "code": "invalid",
        "detail": "The request is not valid; see fields.",
        "fields": {parameter: NUL_REFUSED},
    }


def test_a_nul_in_a_query_parameter_of_a_page_is_a_400(client, merchant):
    delivery = factories.new_delivery(merchant, "nul-page")
    assert client.get(f"/t/{delivery.tracking_token}").status_code == 200
    assert client.get(f"/t/{delivery.tracking_token}?utm=%00").status_code == 400


def test_a_nul_in_a_tracking_path_is_not_found(client, zones):
    api = client.get("/api/v1/track/a%00b")
    assert (api.status_code, api["Content-Type"], api.json()["code"]) == (404, "application/json", "not_found")
    page = client.get("/t/a%00b")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("url", ["/ws/track/{}/", "/ws/driver/?token={}", "/ws/ops/?token={}"])
async def test_a_socket_with_a_nul_in_its_token_is_refused_as_an_unknown_token(url):
    async def refusal(token: str) -> tuple[bool, int]:
        socket = WebsocketCommunicator(application, url.format(token))
        connected, code = await socket.connect()
        await socket.disconnect()
        return connected, code

    unknown = await refusal("ab")
    assert unknown[0] is False
    assert await refusal("a%00b") == unknown


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ws/driver/", "/ws/ops/"])
async def test_a_socket_whose_query_string_is_not_utf8_is_refused_as_an_unknown_token(path):
    """A client may send raw bytes in the query string: refused like any unknown token, not a crashed handshake."""

    async def refusal(query: bytes) -> tuple[bool, int]:
        socket = WebsocketCommunicator(application, path)
        socket.scope["query_string"] = query
        connected, code = await socket.connect()
        await socket.disconnect()
        return connected, code

    unknown = await refusal(b"token=ab")
    assert unknown[0] is False
    assert await refusal(b"token=a\xffb") == unknown
