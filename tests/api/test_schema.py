"""schemathesis against the live server's own OpenAPI schema: no 5xx, every status code, content
type, header and body as the schema says, and schema-invalid input refused with 4xx.

Examples, coverage and fuzzing phases with a bounded number of examples per operation (fixed
seed, deterministic generation), so the run stays well under a minute. The check
``positive_data_acceptance`` is left out: a JSON Schema cannot say what a valid FHIR
Observation is (LOINC code, UCUM unit, timezone, plausible value), so a schema-valid body may
rightly be refused with 422 and its records quarantined.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, auth, make_store

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance,negative_data_rejection,"
          "missing_required_header,unsupported_method,ignored_auth")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("api-schema")
    home = base / "home"
    make_store(home, pseudonyms=("tw-api", "TW-3F2A"))  # TW-3F2A: the schema's example
    srv = Server(home, base / "server.log")
    yield srv
    srv.stop()


def test_the_live_server_conforms_to_its_own_openapi_schema(server, tmp_path):
    token = httpx.post(server.url + "/token", auth=auth("clinician"), timeout=30)
    assert token.status_code == 200, token.text
    exe = Path(sys.executable).with_name("schemathesis")
    cmd = [str(exe) if exe.exists() else "schemathesis", "run", server.url + "/openapi.json",
           "-H", f"Authorization: Bearer {token.json()['access_token']}",
           "--checks", CHECKS, "--max-examples", "25", "--generation-deterministic",
           "--request-timeout", "20", "--no-color", "--report", "junit",
           "--report-dir", str(tmp_path)]
    # cwd: schemathesis keeps a cache folder (.schemathesis/) where it runs
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "Test cases:" in out and " passed" in out, out[-3000:]
    assert server.alive() and "Traceback" not in server.log(), server.log()[-3000:]
