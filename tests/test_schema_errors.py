"""The schema documents what an operation can answer besides success (core/schema.py) and the Idempotency-Key
header of every POST; `manage.py spectacular --validate --fail-on-warn` also runs in CI (.ci/run)."""

import json

import jsonschema
import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from tests import factories


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_operation_documents_its_error_answers_in_the_error_shape():
    schema = _schema()
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "detail"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"429", "503"} <= set(responses), (method, path)
            assert ("401" in responses) == ("security" in operation or path == "/api/v1/auth/token"), (method, path)
            if "{id}" in path:
                assert "404" in responses, (method, path)
            if method == "post":
                assert {"400", "409", "413", "422"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status >= "400":
                    body = response["content"]["application/json"]
                    assert body["schema"] == {"$ref": "#/components/schemas/Error"}
                    assert set(body["example"]) == (
                        {"code", "detail", "fields"} if status == "400" else {"code", "detail"}
                    )


def test_every_post_takes_an_idempotency_key():
    for path, operations in _schema()["paths"].items():
        if "post" in operations:
            headers = [p for p in operations["post"]["parameters"] if p["in"] == "header"]
            assert [(h["name"], h["schema"]["maxLength"]) for h in headers] == [("Idempotency-Key", 255)], path


def test_the_schema_describes_objects_to_integrators_not_our_implementation():
    """Serializers' docstrings are the schema's descriptions (Swagger UI, Redoc): a mixin's note about CPU and
    tests showed on nine of the main objects."""
    schema = _schema()
    described = {name: part.get("description", "") for name, part in schema["components"]["schemas"].items()}
    for name, description in described.items():
        assert not any(word in description for word in ("issue 12", "CPU", "tests/", "serializer")), name


def test_each_operations_bad_input_example_names_one_of_its_own_inputs():
    """Every 400 example named `external_id`, a field of creating a delivery only: the docs showed a logout or a
    decline refused over a field they do not have."""
    paths = _schema()["paths"]

    def named(path: str, method: str) -> list[str]:
        return list(paths[path][method]["responses"]["400"]["content"]["application/json"]["example"]["fields"])

    assert named("/api/v1/deliveries", "post")[0] in {"external_id", "pickup", "dropoff"}
    assert named("/api/v1/offers/{id}/decline", "post") == ["reason"]
    assert named("/api/v1/deliveries", "get")[0] in {"status", "external_id", "page"}
    assert named("/api/v1/auth/logout", "post") == ["Idempotency-Key"]


def test_the_schema_is_built_once_per_language_and_format_whoever_asks(monkeypatch):
    """Anyone may read `/api/schema/`: built for every request (~50 ms of CPU), 30 anonymous clients asking again
    and again held every other request of a server ~1.8 s. Each process now builds it once per language and format
    (what the answer differs by), and a `?version=` no longer writes its text into the schema."""
    builds = []
    build = SchemaGenerator.get_schema
    monkeypatch.setattr(SchemaGenerator, "get_schema", lambda self, **kw: builds.append(1) or build(self, **kw))
    client = APIClient()

    yaml_answers = {client.get("/api/schema/").content for _ in range(5)}
    yaml_answers |= {client.get("/api/schema/", {"version": f"<b>{n}</b>", "lang": f"x{n}"}).content for n in range(5)}
    json_answers = [client.get("/api/schema/", {"format": "json"}) for _ in range(5)]

    assert len(builds) <= 2  # YAML and JSON, unless an earlier test in this process asked already
    assert len(yaml_answers) == 1 and b"<b>" not in yaml_answers.pop()
    assert {answer.content for answer in json_answers} == {json_answers[0].content}
    assert json_answers[0]["Content-Type"] == "application/vnd.oai.openapi+json"
    assert json_answers[0].json()["info"]["version"] == "1.0.0"


@pytest.mark.django_db
def test_a_last_page_matches_the_schema_as_openapi_3_1_reads_it(merchant_api):
    """An OpenAPI 3.1 schema is JSON Schema 2020-12, which has no `nullable` (OpenAPI 3.0's word): DRF's page said
    `next` and `previous` were strings, so a client generated from /api/schema/ refused every last page of every
    list (`"next": null`)."""
    factories.delivery_via_api(merchant_api)
    page = merchant_api.get("/api/v1/deliveries").json()
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()

    assert schema["openapi"].startswith("3.1") and page["next"] is None
    described = {"$ref": "#/components/schemas/PaginatedMerchantDeliveryList", "components": schema["components"]}
    assert list(jsonschema.Draft202012Validator(described).iter_errors(page)) == []
    assert '"nullable"' not in json.dumps(schema)
