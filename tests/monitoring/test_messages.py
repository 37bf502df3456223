"""Issue 21 item 10: bad input at every edge gets a message naming the record, the field and
what was expected (range, unit set or format), and the quarantine keeps the same facts."""

from datetime import UTC, datetime

from cardiotwin.monitoring import ColumnMap, Observation, Screen, read_fhir, read_hl7v2, read_table
from tests.monitoring.test_fhir import bundle, observation
from tests.monitoring.test_hl7v2 import MSG


def _all_rejections(tmp_path):
    fhir = read_fhir(bundle(
        observation("wt", "29463-7", 80, "kg"),
        observation("psi", "8480-6", 2.3, "[psi]"),
        observation("pre", "8867-4", 71, "/min", status="preliminary"),
        observation("naive", "8867-4", 71, "/min", t="2024-05-01T10:43:00"),
        observation("nosubj", "8867-4", 71, "/min", subject=None),
        {"resourceType": "Condition", "id": "c1"}), name="edge.json")
    hl7 = read_hl7v2(MSG, authority="TWIN")
    csv_path = tmp_path / "edge.csv"
    csv_path.write_text("time,hr\n2024-05-01T10:00:00,70\n2024-05-01T10:01:00+00:00,x\n")
    table = read_table(csv_path, columns=ColumnMap(time="time", values={"hr": ("8867-4", "/min")}),
                       subject="tw-1")
    screen = Screen()
    t = datetime(2024, 5, 1, 10, tzinfo=UTC)
    for minute, sbp in ((0, 120), (0, 121), (-1, 118), (1, 420)):
        screen.offer(Observation(subject="tw-1", time=t.replace(minute=10 + minute), code="8480-6",
                                 value_as_received=sbp, unit="mm[Hg]", source="edge",
                                 record=f"m{minute}:{sbp}"))
    return [*fhir.rejections, *hl7.rejections, *table.rejections, *screen.quarantine]


def test_every_rejection_names_record_field_and_expectation(tmp_path):
    rejections = _all_rejections(tmp_path)
    kinds = {r.kind for r in rejections}
    assert kinds == {"unknown-code", "unit", "status", "malformed", "subject", "implausible",
                     "out-of-order", "conflict"}
    for r in rejections:
        assert r.record and r.field and r.expected, r
        assert r.reason.startswith(f"{r.source}#{r.record}") or r.reason.startswith(r.source), r
        assert r.record in r.reason, r


def test_an_implausible_value_message_reads_well(tmp_path):
    (r,) = [r for r in _all_rejections(tmp_path) if r.kind == "implausible"]
    assert r.reason.startswith(
        "edge#m1:420: value: Systolic blood pressure (8480-6) is outside its plausible range "
        "(got '420 mm[Hg]'); expected 0-300 mm[Hg] (ricu concept dictionary")
