"""HL7 v2 ORU^R01 (parsed with hl7apy)."""

from datetime import timedelta, timezone

import pytest

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.monitoring import read_hl7v2

MSG = "\r".join([
    "MSH|^~\\&|MONITOR|ICU|TWIN|HOSP|20240501104200+0200||ORU^R01^ORU_R01|MSG0001|P|2.5",
    "PID|1||123456^^^HOSP^MR~tw-0001^^^TWIN^PI||Doe^John",
    "OBR|1|||vitals|||20240501104200+0200",
    "OBX|1|NM|8867-4^Heart rate^LN||72|/min^per minute^UCUM|||||F|||20240501104200+0200||||mon-7",
    "OBX|2|NM|8480-6^Systolic BP^LN||121|mm[Hg]^mmHg^UCUM|||||F",
    "OBX|3|NM|8462-4^Diastolic BP^LN||79|mmHg^mmHg^UCUM|||||F",
    "OBX|4|NM|8478-0^Mean BP^LN||93|[psi]^psi^UCUM|||||F",
    "OBX|5|NM|8867-4^Heart rate^LN||73|/min|||||P|||20240501104300+0200",
    "OBX|6|NM|29463-7^Body weight^LN||80|kg|||||F",
    "OBX|7|NM|8867-4^Heart rate^LN||7x|/min|||||F|||202405011044+0200",
    "",
])


def test_oru_r01_reads_pid3_of_the_twin_authority_and_obx():
    batch = read_hl7v2(MSG, authority="TWIN")
    hr, sbp, dbp = batch.observations
    assert {o.subject for o in batch.observations} == {"tw-0001"}  # never the MR number
    assert hr.device == "mon-7" and hr.source == "hl7v2:MSG0001" and hr.record == "OBX 1"
    assert hr.time.isoformat() == "2024-05-01T08:42:00+00:00" and hr.value == pytest.approx(1.2)
    assert sbp.time == hr.time  # from OBR-7
    assert dbp.unit == "mmHg" and dbp.value == pytest.approx(units.mmhg_to_pa(79))
    by = {r.record: r for r in batch.rejections}
    assert by["OBX 4"].kind == "unit" and by["OBX 4"].value == "[psi]"
    assert by["OBX 5"].kind == "status" and by["OBX 5"].field == "OBX-11"
    assert by["OBX 6"].kind == "unknown-code" and by["OBX 6"].value == "29463-7"
    assert by["OBX 7"].field == "OBX-5" and "hl7v2:MSG0001#OBX 7: OBX-5" in by["OBX 7"].reason
    assert sbp.device == ""


def test_times_without_offset_need_a_timezone_and_subject_must_agree(tmp_path):
    msg = MSG.replace("20240501104200+0200", "20240501104200")
    batch = read_hl7v2(msg, authority="TWIN")
    assert batch.observations == () and all(r.field in ("OBX-14", "OBR-7", "OBX-11", "OBX-3.3",
                                                       "OBX-5") for r in batch.rejections)
    cest = timezone(timedelta(hours=2))
    path = tmp_path / "m.hl7"
    path.write_text(msg.replace("\r", "\n"))
    ok = read_hl7v2(path, authority="TWIN", default_timezone=cest)
    assert ok.observations[0].time.isoformat() == "2024-05-01T08:42:00+00:00"
    wrong = read_hl7v2(MSG, authority="TWIN", subject="tw-2")
    assert wrong.observations == () and wrong.rejections[0].kind == "subject"
    none = read_hl7v2(MSG, authority="OTHER")
    assert "PID-3.4" in none.rejections[0].reason
    # the quarantine never keeps the PID segment's names or hospital numbers
    for r in wrong.rejections + none.rejections:
        assert "Doe" not in str(r.to_dict()) and "123456" not in str(r.to_dict())


def test_not_an_oru_message_is_refused():
    with pytest.raises(InputError, match=r"MSH-9 is 'ADT\^A01'"):
        read_hl7v2("MSH|^~\\&|A|B|C|D|20240501||ADT^A01|X1|P|2.5\rPID|1||tw-1")
