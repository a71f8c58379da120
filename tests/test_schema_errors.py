"""The schema documents what an operation can answer besides success (core/schema.py) and the Idempotency-Key
header of every POST; `manage.py spectacular --validate --fail-on-warn` also runs in CI (.ci/run)."""

from drf_spectacular.generators import SchemaGenerator


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
