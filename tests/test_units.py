"""Unit conversions against their definitions."""

import pytest

from cardiotwin import units


def test_mmhg_definition():
    # 1 mmHg = 13.5951 g/cm³ · 9.80665 m/s² · 1 mm = 133.322 Pa (conventional value)
    assert units.mmhg_to_pa(1.0) == pytest.approx(13595.1 * 9.80665 * 1e-3, rel=1e-6)
    assert units.pa_to_mmhg(units.mmhg_to_pa(93.0)) == pytest.approx(93.0, rel=1e-12)


def test_flow_and_resistance_round_trips():
    assert units.l_min_to_m3_s(6.0) == pytest.approx(1e-4)
    assert units.m3_s_to_l_min(1e-4) == pytest.approx(6.0)
    r = units.mmhg_s_ml_to_pa_s_m3(1.0)  # one peripheral resistance unit (PRU)
    assert r == pytest.approx(1.33322387415e8)
    assert units.pa_s_m3_to_mmhg_s_ml(r) == pytest.approx(1.0)


def test_area_and_volume():
    assert units.mm2_to_cm2(80.0) == pytest.approx(0.8)
    assert units.m2_to_cm2(units.cm2_to_m2(2.5)) == pytest.approx(2.5)
    assert units.m3_to_ml(units.ml_to_m3(70.0)) == pytest.approx(70.0)


def test_monitoring_units():
    # 1 kPa = 1000 Pa = 7.50062 mmHg (from the conventional mmHg above)
    assert units.kpa_to_pa(1.0) == 1000.0
    assert units.pa_to_mmhg(units.kpa_to_pa(1.0)) == pytest.approx(7.50062, rel=1e-5)
    assert units.pa_to_kpa(units.kpa_to_pa(13.3)) == pytest.approx(13.3)
    assert units.hz_to_bpm(units.bpm_to_hz(72.0)) == pytest.approx(72.0)
    assert units.l_to_m3(5.0) == pytest.approx(5e-3)
    assert units.ml_min_to_m3_s(6000.0) == pytest.approx(units.l_min_to_m3_s(6.0))
    assert units.ml_s_to_m3_s(100.0) == pytest.approx(1e-4)
    assert units.fraction_to_percent(units.percent_to_fraction(97.0)) == pytest.approx(97.0)
