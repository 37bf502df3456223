"""CSV tables with a declared column map."""

from datetime import UTC

import pytest

from cardiotwin import units
from cardiotwin.errors import InputError, UnitError
from cardiotwin.monitoring import ColumnMap, Screen, read_table

COLUMNS = ColumnMap(time="time", values={"hr": ("8867-4", "/min"), "sbp": ("8480-6", "mm[Hg]"),
                                         "co": ("8741-1", "L/min")}, device="dev")


def test_rows_become_observations_and_bad_cells_are_quarantined(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("time,hr,sbp,co,dev\n"
                    "2024-05-01T10:00:00+00:00,70,120,5.1,m1\n"
                    "2024-05-01T10:01:00+00:00,71,,5.2,m1\n"
                    "2024-05-01T10:02:00,72,119,,m1\n"
                    "2024-05-01T10:03:00+00:00,abc,999,5.0,m1\n")
    batch = read_table(path, columns=COLUMNS, subject="tw-1")
    assert len(batch.observations) == 7
    assert batch.observations[1].value == pytest.approx(units.mmhg_to_pa(120))
    by = {r.record: r for r in batch.rejections}
    assert by["row 4"].field == "column time" and "no UTC offset" in by["row 4"].reason
    assert by["row 5/hr"].reason == ("csv:v.csv#row 5/hr: column hr: value is not a number "
                                     "(got 'abc'); expected a number")
    s = Screen()
    s.offer_batch(batch)
    (implausible,) = [r for r in s.quarantine if r.kind == "implausible"]
    assert implausible.record == "row 5/sbp" and implausible.expected.startswith("0-300 mm[Hg]")
    assert len(s.accepted) == 6 and len(s.quarantine) == 3


def test_a_timezone_for_naive_times_and_a_bad_column_map(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("time,hr,sbp,co,dev\n2024-05-01T10:02:00,72,119,,m1\n")
    batch = read_table(path, columns=COLUMNS, subject="tw-1", default_timezone=UTC)
    assert len(batch.observations) == 2 and batch.rejections == ()
    with pytest.raises(UnitError, match=r"column map: values\['sbp'\]: unknown unit"):
        ColumnMap(time="time", values={"sbp": ("8480-6", "psi")})
    with pytest.raises(InputError, match=r"column\(s\) \['spo2'\] of the column map"):
        read_table(path, columns=ColumnMap(time="time", values={"spo2": ("59408-5", "%")}),
                   subject="tw-1")
    with pytest.raises(InputError, match="no subject column; give subject="):
        read_table(path, columns=COLUMNS)
