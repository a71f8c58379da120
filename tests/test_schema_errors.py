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
