"""FHIR R4 Observation and Bundle JSON (read with fhir.resources' R4B models)."""

import json

import pytest

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.monitoring import Screen, read_fhir

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def observation(oid, code, value, unit, *, t="2024-05-01T10:42:00+02:00", subject="tw-0001",
                status="final", **extra):
    d = {"resourceType": "Observation", "id": oid, "status": status,
         "code": {"coding": [{"system": LOINC, "code": code}]},
         "effectiveDateTime": t,
         "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
         "device": {"reference": "Device/monitor-7"}}
    if subject:
        d["subject"] = {"reference": f"Patient/{subject}"}
    d.update(extra)
    return d


def bp_panel(oid, sys_mmhg, dia_mmhg):
    comp = [{"code": {"coding": [{"system": LOINC, "code": c}]},
             "valueQuantity": {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
            for c, v in (("8480-6", sys_mmhg), ("8462-4", dia_mmhg))]
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": {"reference": "Patient/tw-0001"},
            "effectiveDateTime": "2024-05-01T10:45:00Z", "component": comp}


def bundle(*resources):
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in resources]}


def test_a_bundle_of_vitals_and_a_bp_panel(tmp_path):
    path = tmp_path / "vitals.json"
    path.write_text(json.dumps(bundle(
        {"resourceType": "Patient", "id": "tw-0001"},
        observation("hr-1", "8867-4", 72, "/min"),
        observation("co-1", "8741-1", 5.4, "L/min"),
        bp_panel("bp-1", 121, 79))))
    batch = read_fhir(path)
    assert batch.rejections == ()
    hr, co, sbp, dbp = batch.observations
    assert hr.subject == "tw-0001" and hr.device == "monitor-7" and hr.source == "fhir:vitals.json"
    assert hr.time.isoformat() == "2024-05-01T08:42:00+00:00" and hr.value == pytest.approx(1.2)
    assert co.value == pytest.approx(units.l_min_to_m3_s(5.4))
    assert (sbp.code, dbp.code) == ("8480-6", "8462-4")
    assert sbp.value == pytest.approx(units.mmhg_to_pa(121)) and sbp.unit == "mm[Hg]"
    assert sbp.record == "Observation/bp-1/component[0]"


def test_bad_records_are_quarantined_with_record_field_and_expectation():
    doc = bundle(
        observation("ok", "8867-4", 70, "/min"),
        observation("wt", "29463-7", 80, "kg"),                 # unknown code
        observation("psi", "8480-6", 2.3, "[psi]"),              # unknown unit
        observation("pre", "8867-4", 71, "/min", status="preliminary"),
        observation("naive", "8867-4", 71, "/min", t="2024-05-01T10:43:00"),
        observation("nosubj", "8867-4", 71, "/min", subject=None),
        {"resourceType": "Condition", "id": "c1"})
    batch = read_fhir(doc, name="post")
    assert [o.record for o in batch.observations] == ["Observation/ok"]
    by = {r.record: r for r in batch.rejections}
    assert by["Observation/wt"].kind == "unknown-code" and by["Observation/wt"].value == "29463-7"
    assert by["Observation/psi"].kind == "unit" and "mm[Hg]" in by["Observation/psi"].expected
    assert by["Observation/psi"].reason.startswith("fhir:post#Observation/psi: unit: unknown unit")
    assert by["Observation/pre"].kind == "status" and by["Observation/pre"].field == "status"
    naive = by["Observation/naive"]  # FHIR: a dateTime with hours SHALL have a timezone
    assert naive.field == "effectiveDateTime" and naive.value == "2024-05-01T10:43:00"
    assert "needs a timezone" in naive.expected
    assert by["Observation/nosubj"].kind == "subject"
    assert by["entry[6]"].value == "Condition"
    raw = json.loads(by["Observation/wt"].raw)
    assert raw["id"] == "wt" and raw["subject"] == "<redacted>"  # subject.display can be a name


def test_missing_elements_are_quarantined_not_crashed_on():
    no_code = observation("nc", "8867-4", 72, "/min")
    del no_code["code"]
    no_value = observation("nv", "8867-4", 72, "/min")
    del no_value["valueQuantity"]
    no_time = observation("nt", "8867-4", 72, "/min")
    del no_time["effectiveDateTime"]
    batch = read_fhir(bundle(no_code, no_value, no_time, "not a resource"))
    assert batch.observations == ()
    fields = [r.field for r in batch.rejections]
    assert fields == ["code", "valueQuantity", "effective[x]", "resource"]  # code: FHIR 1..1
    assert all(r.expected for r in batch.rejections)


def test_explicit_subject_fills_in_and_must_agree():
    doc = observation("hr-1", "8867-4", 72, "/min", subject=None)
    assert read_fhir(doc, subject="tw-9").observations[0].subject == "tw-9"
    other = read_fhir(observation("hr-2", "8867-4", 72, "/min"), subject="tw-9")
    (r,) = other.rejections
    assert r.kind == "subject" and r.expected == "tw-9"
    assert "tw-0001" not in r.reason + r.value + r.raw  # a hospital's id is not repeated


def test_the_same_bundle_twice_is_ingested_once():
    doc = bundle(observation("hr-1", "8867-4", 72, "/min"),
                 observation("hr-2", "8867-4", 74, "/min", t="2024-05-01T10:43:00+02:00"))
    s = Screen()
    assert len(s.offer_batch(read_fhir(doc))) == 2
    assert s.offer_batch(read_fhir(doc)) == [] and s.duplicates == 2 and len(s.quarantine) == 0


def test_not_fhir_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"x.json: not FHIR JSON"):
        read_fhir(bad)
    with pytest.raises(InputError, match=r"resourceType 'Patient' is not read"):
        read_fhir({"resourceType": "Patient"})
