"""The REST API against a real server process (``cardiotwin api serve``), over real HTTP:
each endpoint, each role, authentication and its audit records, hostile input."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from tests.api.conftest import PASSWORD, PSEUDO, USERS, auth
from tests.twin.test_assimilate import T0

ROLES = tuple(USERS)
WRITERS = ("clinician", "admin")  # the store's twin.write permission


def _obs(code, value, unit, t, *, subject=PSEUDO, oid=None):
    return {"resourceType": "Observation", "id": oid or f"{code}-{t:%H%M%S}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{subject}"}, "effectiveDateTime": t.isoformat(),
            "valueQuantity": {"value": value, "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit}}


def _bundle(minutes, *, start=T0, hr=72, sbp=150, dbp=85):
    entries = []
    for i in range(minutes):
        t = start + timedelta(minutes=i)
        for code, value, unit in (("8867-4", hr, "/min"), ("8480-6", sbp, "mm[Hg]"),
                                  ("8462-4", dbp, "mm[Hg]")):
            entries.append({"resource": _obs(code, value, unit, t)})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _audit(server, **match):
    """Audit records of the server's store whose fields equal ``match``."""
    from cardiotwin.store import Actor
    from cardiotwin.workflows import open_store

    st = open_store(server.home)
    try:
        recs = st.audit_records(actor=Actor("auditor", "privacy_officer", client="test"),
                                purpose="test")
    finally:
        st.close()
    return [r for r in recs if all(r.get(k) == v for k, v in match.items())]


def _is_problem(res, status):
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/problem+json")
    body = res.json()
    assert body["status"] == status and body["detail"] and "Traceback" not in res.text
    return body


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def ingested(server, client):
    """Ten minutes of vitals (30 observations) posted by the clinician: version 2."""
    res = client.post(f"/twins/{PSEUDO}/observations", json=_bundle(10),
                      auth=auth("clinician"))
    assert res.status_code == 200, res.text
    return res.json()


def test_health_needs_no_login_and_the_schema_lists_every_endpoint(client):
    assert client.get("/health").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/token", "/twins", "/twins/{pseudonym}", "/twins/{pseudonym}/versions",
              "/twins/{pseudonym}/events", "/twins/{pseudonym}/observations", "/events"):
        assert p in paths, p
    assert "401" in paths["/twins/{pseudonym}"]["get"]["responses"]


def test_a_call_without_credentials_is_refused_and_audited(server, client):
    res = client.get(f"/twins/{PSEUDO}")
    body = _is_problem(res, 401)
    assert "Basic" in res.headers["www-authenticate"] and "POST /token" in body["detail"]
    recs = _audit(server, action="login", actor="anonymous", outcome="failure")
    assert recs and recs[-1]["client"] == "api/127.0.0.1"


def test_a_wrong_password_is_refused_and_audited_as_a_failed_login(server, client):
    res = client.get(f"/twins/{PSEUDO}", auth=("res_api", "not-the-password"))
    assert "invalid user name or password" in _is_problem(res, 401)["detail"]
    recs = _audit(server, action="login", actor="res_api", outcome="failure")
    assert recs and recs[-1]["details"]["reason"] == "wrong password"
    # a correct login resets the failure count (no lockout from one mistake)
    assert client.get(f"/twins/{PSEUDO}", auth=auth("researcher")).status_code == 200


def test_a_bearer_token_from_post_token_stands_for_the_user(server, client):
    tok = client.post("/token", auth=auth("researcher"))
    assert tok.status_code == 200, tok.text
    body = tok.json()
    assert body["token_type"] == "bearer" and body["role"] == "researcher"
    assert body["expires_in_s"] == 1800
    hdr = {"Authorization": f"Bearer {body['access_token']}"}
    res = client.get(f"/twins/{PSEUDO}", headers=hdr)
    assert res.status_code == 200 and res.json()["pseudonym"] == PSEUDO
    reads = _audit(server, actor="res_api", action="read", patient_pseudonym=PSEUDO)
    assert reads and reads[-1]["role"] == "researcher" and reads[-1]["client"] == "api/127.0.0.1"
    # an unknown token is refused and audited; /token itself wants Basic
    bad = client.get(f"/twins/{PSEUDO}", headers={"Authorization": "Bearer forged"})
    assert "unknown or expired" in _is_problem(bad, 401)["detail"]
    _is_problem(client.post("/token", headers=hdr), 401)
    _is_problem(client.get("/twins", headers={"Authorization": "Basic !!notbase64"}), 401)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_state_history_and_events(client, ingested, role):
    who = auth(role)
    state = client.get(f"/twins/{PSEUDO}", auth=who)
    assert state.status_code == 200, state.text
    s = state.json()
    assert s["version"] == 2 and s["estimate"]["n_observations"] == 30
    mbp = s["estimate"]["estimates"]["mean_bp"]
    assert mbp["unit"] == "mmHg" and mbp["sd"] > 0
    assert s["estimate"]["stale"] and s["estimate"]["data_age_s"] > 0  # data from 2024
    assert s["build_physiology"]["systolic_bp_mmhg"] == 130
    hist = client.get(f"/twins/{PSEUDO}/versions", auth=who).json()
    assert [v["version"] for v in hist["versions"]] == [1, 2] and hist["version"] == 2
    events = client.get(f"/twins/{PSEUDO}/events", auth=who)
    assert events.status_code == 200, events.text
    assert "current" in {e["kind"] for e in events.json()}
    listing = client.get("/twins", auth=who).json()
    assert [t["pseudonym"] for t in listing] == [PSEUDO]
    assert client.get("/events", auth=who).status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_only_the_care_team_posts_observations_and_a_denial_is_audited(server, client,
                                                                        ingested, role):
    t = T0 + timedelta(hours=1, minutes=ROLES.index(role))
    res = client.post(f"/twins/{PSEUDO}/observations", auth=auth(role),
                      json=_obs("8867-4", 75, "/min", t))
    if role in WRITERS:
        assert res.status_code == 200, res.text
        assert res.json()["accepted"] == 1
    else:
        assert "may not do 'twin.write'" in _is_problem(res, 403)["detail"]
        recs = _audit(server, actor=USERS[role], outcome="denied", patient_pseudonym=PSEUDO)
        assert recs and recs[-1]["details"]["permission"] == "twin.write"


def test_ingest_result_versions_flags_and_idempotence(client, ingested):
    assert ingested["accepted"] == 30 and ingested["duplicates"] == 0
    assert ingested["version"] == 2 and ingested["base_version"] == 1
    assert ingested["quarantined"] == []
    assert ingested["stale"] and ingested["drift"] and ingested["drift_reasons"]
    again = client.post(f"/twins/{PSEUDO}/observations", json=_bundle(10),
                        auth=auth("admin"))
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["accepted"] == 0 and body["duplicates"] == 30 and body["version"] is None


def test_history_as_of_a_time(client, ingested):
    who = auth("clinician")
    versions = client.get(f"/twins/{PSEUDO}/versions", auth=who).json()["versions"]
    first = versions[0]["created_utc"]
    old = client.get(f"/twins/{PSEUDO}/versions", auth=who, params={"as_of": first})
    assert old.status_code == 200, old.text
    assert old.json()["version"] == 1 and len(old.json()["versions"]) == 1
    state = client.get(f"/twins/{PSEUDO}", auth=who, params={"as_of": first}).json()
    assert state["version"] == 1 and state["estimate"]["n_observations"] == 0
    before = client.get(f"/twins/{PSEUDO}", auth=who,
                        params={"as_of": "2000-01-01T00:00:00+00:00"})
    assert "at or before 2000-01-01" in _is_problem(before, 404)["detail"]
    naive = client.get(f"/twins/{PSEUDO}", auth=who, params={"as_of": "2024-05-01T10:42:00"})
    assert "timezone" in _is_problem(naive, 422)["detail"]
    _is_problem(client.get(f"/twins/{PSEUDO}", auth=who, params={"as_of": "yesterday"}), 422)


def test_events_say_when_the_twin_went_stale_and_drifted(client, ingested):
    events = client.get(f"/twins/{PSEUDO}/events", auth=auth("clinician")).json()
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "current" and kinds[-1] == "stale", kinds
    assert events[0]["time_utc"].startswith("2024-05-01T10:00:00")
    drift = [e for e in events if e["kind"] == "drift"]
    assert drift and "mean arterial pressure" in drift[0]["detail"]
    everywhere = client.get("/events", auth=auth("researcher")).json()
    assert {json.dumps(e, sort_keys=True) for e in events} <= {
        json.dumps(e, sort_keys=True) for e in everywhere}


def test_unknown_twin_is_404_with_what_to_do(client):
    res = client.get("/twins/tw-nobody", auth=auth("clinician"))
    assert "check the pseudonym" in _is_problem(res, 404)["detail"]
    _is_problem(client.get("/twins/tw-nobody/events", auth=auth("clinician")), 404)
    post = client.post("/twins/tw-nobody/observations", auth=auth("clinician"),
                       json=_obs("8867-4", 70, "/min", T0, subject="tw-nobody"))
    _is_problem(post, 404)


def test_hostile_input_gets_4xx_is_quarantined_and_the_service_keeps_running(server, client,
                                                                            ingested):
    who = auth("clinician")
    url = f"/twins/{PSEUDO}/observations"
    hdr = {"Content-Type": "application/fhir+json"}
    # not JSON, not an object, not FHIR
    assert "not valid JSON" in _is_problem(
        client.post(url, auth=who, content=b"{\"resourceType\": ", headers=hdr), 400)["detail"]
    for junk in (b"\xff\xfe{}", b"[" * 30_000 + b"]" * 30_000):  # bad UTF-8, nesting bomb
        _is_problem(client.post(url, auth=who, content=junk, headers=hdr), 400)
    _is_problem(client.post(url, auth=who, json=[1, 2, 3]), 422)
    _is_problem(client.post(url, auth=who, json={"resourceType": "Patient"}), 422)
    # wrong unit: quarantined with the reason, 422 because nothing was accepted
    t = T0 + timedelta(hours=2)
    res = client.post(url, auth=who, json=_obs("8480-6", 2.9, "[psi]", t, oid="psi"))
    body = _is_problem(res, 422)
    q = body["quarantined"]
    assert len(q) == 1 and q[0]["kind"] == "unit" and "[psi]" in q[0]["reason"]
    nan = json.dumps(_obs("8867-4", 70, "/min", t, oid="nan")).replace("70", "NaN", 1)
    assert _is_problem(client.post(url, auth=who, content=nan, headers=hdr), 422)["quarantined"]
    # injection strings: in the path the pseudonym pattern refuses them; in the record they
    # are quarantined (the code is unknown) and stored as text only
    evil = "x'; DROP TABLE observations; --"
    _is_problem(client.get("/twins/" + "tw-api%27%3B%20DROP%20TABLE%20twins", auth=who), 422)
    bad = _obs("8867-4", 70, "/min", t, oid="evil")
    bad["code"]["coding"][0]["code"] = evil
    bad["device"] = {"display": "<script>alert(1)</script>"}
    body = _is_problem(client.post(url, auth=who, json=bad), 422)
    assert body["quarantined"][0]["kind"] == "unknown-code"
    # a mixed batch: the good one is accepted, the implausible one quarantined: 200
    mixed = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": _obs("8867-4", 71, "/min", t + timedelta(minutes=1), oid="ok")},
        {"resource": _obs("8480-6", 420, "mm[Hg]", t + timedelta(minutes=1), oid="hi")}]}
    res = client.post(url, auth=who, json=mixed)
    assert res.status_code == 200, res.text
    assert res.json()["accepted"] == 1 and res.json()["quarantined"][0]["kind"] == "implausible"
    # another subject's observation posted to this twin is quarantined, not filed elsewhere
    other = client.post(url, auth=who, json=_obs("8867-4", 70, "/min", t, subject="tw-other"))
    assert other.status_code == 422
    # too large (the server runs with --max-body 65536): 413 before parsing
    big = _bundle(200)
    assert len(json.dumps(big)) > 65536
    assert "split the Bundle" in _is_problem(client.post(url, auth=who, json=big), 413)["detail"]
    chunks = (b"x" * 8192 for _ in range(16))  # chunked, no Content-Length
    _is_problem(client.post(url, auth=who, content=chunks, headers=hdr), 413)
    # everything refused is in the store's quarantine; the service still answers
    from cardiotwin.store import Actor
    from cardiotwin.workflows import open_store

    st = open_store(server.home)
    try:
        kinds = [r["kind"] for r in st.list_quarantine(
            PSEUDO, actor=Actor("dr_api", "clinician", client="test"), purpose="test")]
    finally:
        st.close()
    assert {"unit", "unknown-code", "implausible", "subject"} <= set(kinds)
    assert server.alive() and client.get("/health").status_code == 200
    assert "Traceback" not in server.log()


def test_wrong_method_and_unknown_path_are_problems(client):
    res = client.put("/twins", auth=auth("clinician"))
    _is_problem(res, 405)
    _is_problem(client.get("/nowhere"), 404)


def test_the_password_never_appears_in_responses_or_the_log(server, client):
    client.get("/twins", auth=("dr_api", PASSWORD + "x"))
    assert PASSWORD not in server.log()
