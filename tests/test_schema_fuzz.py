"""Schema-driven fuzzing (issue 13): schemathesis generates requests from `/api/schema/` against a production-mode
server, as a driver, a merchant, ops and anonymous, and every answer must be no 5xx, a status the schema documents
for that operation, a body matching the documented schema and the documented content type.

Sizes come from the environment so CI stays within its time: RELAY_FUZZ_EXAMPLES (per operation and role, default
15: 22 operations x 4 roles, about 1,300 cases) and RELAY_FUZZ_COVERAGE_ROLE (the role that also runs the
coverage phase, schemathesis' boundary and invalid-input cases, about 1,600 more; default driver, `none` skips).
Logout is left out of the fuzzing (it would revoke the token mid-run) and is covered by tests/test_access_matrix.py.
"""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from tests.servers import production_env, running_server

EXAMPLES = os.environ.get("RELAY_FUZZ_EXAMPLES", "15")
COVERAGE_ROLE = os.environ.get("RELAY_FUZZ_COVERAGE_ROLE", "driver")
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
PASSWORD = "fuzz-pass-123"
ACCOUNTS = {
    "driver": ["create_driver", "fz-driver", "--zone", "centro"],
    "merchant": ["create_merchant", "fz-merchant"],
    "ops": ["create_ops", "fz-ops"],
}
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _schemathesis(url: str, role: str, token: str | None, log: Path) -> subprocess.Popen:
    """One role's run, started: its output (stdout and stderr) goes to `log`."""
    phases = "coverage,fuzzing,stateful" if role == COVERAGE_ROLE else "fuzzing,stateful"
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/api/schema/",
        "--checks", CHECKS, "--phases", phases, "--max-examples", EXAMPLES, "--seed", "13",
        "--exclude-path", "/api/v1/auth/logout", "--workers", "1", "--no-shrink",  # 2 threads: a CPython 3.11 ast bug
    ]  # fmt: skip
    if token:
        command += ["--header", f"Authorization: Token {token}"]
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True)


def _cases(output: str) -> int:
    """How many cases schemathesis generated, from its summary ("1650 generated, 1650 passed")."""
    found = re.search(r"(\d+) generated", output)
    return int(found.group(1)) if found else 0


def test_generated_requests_as_every_role_get_documented_answers(zones, settings, tmp_path):
    for command in ACCOUNTS.values():
        call_command(*command, "--password", PASSWORD, stdout=io.StringIO())
    env = production_env(settings) | {"API_THROTTLE_RATE": "100000/min"}
    with running_server(env, tmp_path / "server.log") as url:
        tokens = {None: None}
        for role, command in ACCOUNTS.items():
            answer = httpx.post(f"{url}/api/v1/auth/token", json={"username": command[1], "password": PASSWORD})
            tokens[role] = answer.json()["token"]
        # The four roles at once, as clients use a server: each generator is one single-threaded process.
        runs = {}
        for role, token in tokens.items():
            name = role or "anonymous"
            log = tmp_path / f"schemathesis-{name}.txt"
            runs[name] = (log, _schemathesis(url, name, token, log))
        failures, cases = {}, 0
        for name, (log, run) in runs.items():
            code = run.wait(timeout=600)
            output = log.read_text()
            if code != 0:
                failures[name] = output[-8000:]
            cases += _cases(output)
    assert failures == {}, "\n\n".join(f"=== as {role}\n{out}" for role, out in failures.items())
    assert cases >= 1000, cases
