"""Pure helpers of app/common.py: where the store is, and the display tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import common
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.study.results import ComparisonRow, FlowSummary


def test_store_root_precedence():
    # --store after `--` wins, then $CARDIOTWIN_HOME, then the documented default.
    env = {"CARDIOTWIN_HOME": "/data/env"}
    assert common.store_root(["--store", "/data/arg"], env) == Path("/data/arg")
    assert common.store_root(["--store=/data/arg"], env) == Path("/data/arg")
    assert common.store_root([], env) == Path("/data/env")
    assert common.store_root([], {}) == Path("out/demo/store")
    # pytest's own arguments are ignored, and no abbreviation of --store is accepted.
    assert common.store_root(["-q", "--st", "x", "tests/app"], {}) == Path("out/demo/store")


def test_comparison_table_change_column():
    rows = [
        ComparisonRow("Peak transvalvular gradient", 60.0, 12.5, "mmHg"),
        ComparisonRow("Net pressure loss", 40.0, 8.0, "mmHg"),
        ComparisonRow("Valve orifice area", None, 2.1, "cm²"),
    ]
    df = common.comparison_table(rows)
    assert list(df.columns) == ["metric", "before", "after", "change", "unit"]
    assert df["change"].iloc[0] == pytest.approx(-47.5, abs=1e-12)
    assert df["change"].isna().iloc[2]  # no "before" value → no change, not 0
    chart = common.gradient_chart_frame(rows)
    assert chart.loc["peak gradient", "before (native valve)"] == pytest.approx(60.0)
    assert chart.loc["net pressure loss", "after (device)"] == pytest.approx(8.0)
    assert chart.shape == (2, 2)


def test_anatomy_table_units():
    lms = AorticRootLandmarks(
        annulus_centre_mm=(0.0, 0.0, 0.0), annulus_normal=(0.0, 0.0, 1.0),
        annulus_diameter_mm=23.04, annulus_perimeter_diameter_mm=23.5,
        annulus_min_diameter_mm=21.0, annulus_max_diameter_mm=25.0,
        annulus_area_mm2=416.9, annulus_perimeter_mm=73.8, lvot_diameter_mm=21.9,
        sinus_diameter_mm=31.2, valve_orifice_area_mm2=80.0, valve_orifice_centre_mm=(0, 0, 5.0),
        valve_orifice_height_mm=5.0, calcium_volume_mm3=150.0)
    df = common.anatomy_table(lms).set_index("measurement")
    # mm² → cm²: 80 mm² = 0.80 cm² (1 cm² = 100 mm²)
    assert df.loc["Native valve orifice area", "value"] == "0.80"
    assert df.loc["Native valve orifice area", "unit"] == "cm²"
    assert df.loc["Annulus min / max diameter", "value"] == "21.0 / 25.0"
    assert df.loc["Annulus diameter (area-derived)", "value"] == "23.0"


def test_convergence_message_levels():
    def note(**stored):
        return FlowSummary.from_dict({"label": "baseline", **stored}).convergence()

    assert note(converged=True, iterations=12) is None
    assert note(status="converged", converged=True) is None
    n = note(status="settled", converged=False, status_reason="flows settled within 2e-3")
    assert n.level == "warning" and "flows settled within 2e-3" in n.text
    n = note(converged=False, iterations=30)
    assert n.level == "error" and "30 iterations" in n.text
    assert note(status="max_iterations", converged=False).level == "error"
