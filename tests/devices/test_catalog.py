"""The device catalog as data: every family with its chart, frame and sources; user catalogs
merged over the shipped one and validated with errors that name the key and the value."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardiotwin.cli import app
from cardiotwin.devices.catalog import CATALOG_PATH, load_catalog
from cardiotwin.errors import ConfigError, DeviceError

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "user_catalog.toml"
runner = CliRunner()


def test_every_kind_is_in_the_shipped_catalog_with_its_sources():
    cat = load_catalog()
    kinds = {f.kind for f in cat.families.values()}
    assert kinds == {"transcatheter_aortic_valve", "aortic_stent", "laa_occluder",
                     "septal_occluder"}
    for key, fam in cat.families.items():
        assert fam.sizing_source and fam.geometry_source and fam.mechanics_source, key
        assert fam.radial_stiffness_n_per_mm > 0 and fam.frame_material, key
        assert fam.strut_width_mm > 0 and fam.strut_thickness_mm > 0, key
        for s in fam.sizes:
            lo, hi = s.sizing_range(fam.sizing_by)
            assert lo < hi, (key, s.nominal_diameter_mm)
        # a number that is not a manufacturer's or a paper's says so
        assert "modelling assumption" in fam.mechanics_source, key


def test_self_expanding_valve_follows_the_evolut_perimeter_chart():
    fam = load_catalog().family("self_expanding_thv")
    assert (fam.expansion, fam.sizing_by, fam.leaflet_position) == (
        "self", "annulus_perimeter", "supra_annular")
    # Medtronic Evolut PRO+ IFU sizing table (perimeter, mm)
    chart = {23: (56.5, 62.8), 26: (62.8, 72.3), 29: (72.3, 81.7), 34: (81.7, 94.2)}
    assert {s.nominal_diameter_mm: s.sizing_range("annulus_perimeter") for s in fam.sizes} == chart
    assert "Evolut PRO+" in fam.sizing_source and fam.oversizing_metric == "perimeter"
    # the warning limits sit just outside the oversizing span the chart itself implies
    implied = [(math.pi * d / p - 1) * 100 for d, rng in chart.items() for p in rng]
    assert fam.oversizing_warn_below_pct < min(implied) < max(implied) < fam.oversizing_warn_above_pct
    for s in fam.sizes:  # supra-annular: leaflets from the skirt top, inside the frame
        assert s.skirt_height_mm + s.leaflet_height_mm < s.frame_height_mm
        assert s.inflow_diameter_mm == s.nominal_diameter_mm < s.outflow_diameter_mm


def test_balloon_valve_keeps_its_numbers_and_field_names():
    fam = load_catalog().family("balloon_expandable_thv")
    assert (fam.expansion, fam.sizing_by, fam.oversizing_metric) == ("balloon", "annulus_area", "area")
    assert fam.frame_material == "cobalt-chromium" and "EIJV8SQA15" in fam.mechanics_source
    assert (fam.frame_wall_mm, fam.skirt_fraction, fam.leaflet_orifice_fraction,
            fam.nominal_depth_mm) == (0.6, 0.45, 0.65, 3.5)
    assert [(s.annulus_area_min_mm2, s.annulus_area_max_mm2) for s in fam.sizes] == [
        (273, 345), (338, 430), (430, 546), (540, 683)]
    for s in fam.sizes:  # the skirt per size is the family's fraction of the frame; the leaflets
        # span its upper half (modelling assumptions, the fallbacks devices.surfaces documents)
        assert fam.skirt_height_of(s) == pytest.approx(fam.skirt_fraction * s.frame_height_mm,
                                                       abs=0.01)
        assert s.leaflet_height_mm == 0.5 * s.frame_height_mm


def test_laa_occluder_ranges_are_ten_to_thirty_percent_compression():
    fam = load_catalog().family("laa_occluder")
    assert [s.nominal_diameter_mm for s in fam.sizes] == [20, 24, 27, 31, 35]
    for s in fam.sizes:
        lo, hi = s.sizing_range("laa_ostium_diameter")
        assert (lo, hi) == pytest.approx((0.7 * s.nominal_diameter_mm, 0.9 * s.nominal_diameter_mm))
    # 14–31.5 mm over the five sizes (Grygier 2017: "15 mm to 32 mm")
    assert fam.sizes[0].laa_ostium_diameter_min_mm == 14.0
    assert fam.sizes[-1].laa_ostium_diameter_max_mm == 31.5
    # the warning limits are the compression limits in diameter oversizing: 1/0.9 − 1, 1/0.7 − 1
    assert fam.oversizing_warn_below_pct == pytest.approx((1 / 0.9 - 1) * 100, abs=0.05)
    assert fam.oversizing_warn_above_pct == pytest.approx((1 / 0.7 - 1) * 100, abs=0.05)


def test_lobe_and_disc_laa_occluder_sizes_and_lobe_lengths():
    fam = load_catalog().family("laa_occluder_lobe_disc")
    assert fam.sizing_by == "laa_landing_zone_diameter"
    # eight sizes over 11–31 mm landing zones; lobe 7.5 mm for 16–22 mm, 10 mm for 25–34 mm
    assert [s.nominal_diameter_mm for s in fam.sizes] == [16, 18, 20, 22, 25, 28, 31, 34]
    assert fam.sizes[0].laa_landing_zone_diameter_min_mm == 11
    assert fam.sizes[-1].laa_landing_zone_diameter_max_mm == 31
    assert [s.frame_height_mm for s in fam.sizes] == [7.5] * 4 + [10.0] * 4
    for s in fam.sizes:  # outflow = the lobe (nominal size), inflow = the larger atrial disc
        assert s.outflow_diameter_mm == s.nominal_diameter_mm < s.inflow_diameter_mm
    for s in fam.sizes:  # the lobe is always oversized, within the warning limits
        lo, hi = s.sizing_range(fam.sizing_by)
        assert fam.oversizing_warn_below_pct < (s.nominal_diameter_mm / hi - 1) * 100
        assert (s.nominal_diameter_mm / lo - 1) * 100 < fam.oversizing_warn_above_pct


def test_stent_and_septal_occluder_ranges_are_contiguous():
    cat = load_catalog()
    for key in ("coarctation_stent", "septal_occluder", "laa_occluder_lobe_disc"):
        fam = cat.family(key)
        ranges = [s.sizing_range(fam.sizing_by) for s in fam.sizes]
        assert all(a[1] >= b[0] for a, b in zip(ranges, ranges[1:], strict=False)), key
    aso = cat.family("septal_occluder")
    for s in aso.sizes:  # the waist is at the top of its own range; discs larger than the waist
        assert s.defect_diameter_max_mm == s.nominal_diameter_mm
        # inflow = right-atrial disc, outflow = left-atrial disc (the larger)
        assert s.outflow_diameter_mm > s.inflow_diameter_mm > s.nominal_diameter_mm


def test_unknown_family_and_size_name_the_value():
    cat = load_catalog()
    with pytest.raises(DeviceError, match="'my_valv'.*known families: balloon_expandable_thv, "
                                          "self_expanding_thv"):
        cat.family("my_valv")
    with pytest.raises(DeviceError, match=r"size 30 mm .*available sizes: 20, 24, 27, 31, 35"):
        cat.family("laa_occluder").size(30)


def test_user_catalog_is_merged_over_the_shipped_one():
    cat = load_catalog(EXAMPLE)
    assert list(cat.families)[:6] == list(load_catalog().families)
    mine = cat.family("my_valve")
    assert mine.sizing_by == "annulus_perimeter"
    assert mine.radial_stiffness_of(mine.size(24)) == 45.0   # the family's
    assert mine.radial_stiffness_of(mine.size(27)) == 50.0   # the size's own figure
    only = load_catalog(EXAMPLE, include_shipped=False)
    assert list(only.families) == ["my_valve"]


def test_user_family_with_a_shipped_key_replaces_it(tmp_path):
    text = EXAMPLE.read_text().replace("families.my_valve", "families.balloon_expandable_thv")
    p = tmp_path / "c.toml"
    p.write_text(text)
    fam = load_catalog(p).family("balloon_expandable_thv")
    assert [s.nominal_diameter_mm for s in fam.sizes] == [24, 27]
    assert load_catalog().family("balloon_expandable_thv").sizes[0].nominal_diameter_mm == 20


def _bad(tmp_path, old: str, new: str, *, count: int = 1) -> Path:
    text = EXAMPLE.read_text()
    assert old in text
    p = tmp_path / "bad.toml"
    p.write_text(text.replace(old, new, count))
    return p


@pytest.mark.parametrize("old, new, message", [
    # the second size's frame height: the key with its list index, and the value
    ("frame_height_mm = 21.0", "frame_height_mm = 1.0",
     r"families\.my_valve\.sizes\[1\]\.frame_height_mm: Input should be greater than 2 \(got 1\.0\)"),
    ("radial_stiffness_n_per_mm = 45.0", "radial_stiffness_n_per_mm = -3.0",
     r"families\.my_valve\.radial_stiffness_n_per_mm: .*greater than 0 \(got -3\.0\)"),
    ('expansion = "balloon"', 'expansion = "inflatable"',
     r"families\.my_valve\.expansion: Input should be 'balloon' or 'self' \(got 'inflatable'\)"),
    ('sizing_by = "annulus_perimeter"', 'sizing_by = "defect_diameter"',
     r"families\.my_valve: sizing_by 'defect_diameter' does not apply to kind "
     r"'transcatheter_aortic_valve'"),
    ("annulus_perimeter_max_mm = 85.0", "annulus_perimeter_max_mm = 70.0",
     r"families\.my_valve\.sizes\[1\]: annulus_perimeter_min_mm must be below "
     r"annulus_perimeter_max_mm \(got 75 and 70\)"),
    ("skirt_fraction = 0.4\n", "",
     r"families\.my_valve: a transcatheter_aortic_valve family needs skirt_fraction"),
    ("frame_material", "frame_materials",
     r"families\.my_valve\.frame_material: Field required.*families\.my_valve\.frame_materials: "
     r"Extra inputs are not permitted"),
])
def test_bad_user_catalog_names_the_key_and_value(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=message):
        load_catalog(_bad(tmp_path, old, new))


def test_a_size_without_the_familys_sizing_range_is_refused(tmp_path):
    p = _bad(tmp_path, "annulus_perimeter_min_mm = 68.0\nannulus_perimeter_max_mm = 75.0",
             "annulus_area_min_mm2 = 360.0\nannulus_area_max_mm2 = 440.0")
    with pytest.raises(ConfigError, match=r"families\.my_valve: sizes\[0\] \(nominal 24 mm\) has "
                                          r"no annulus_perimeter_min_mm/annulus_perimeter_max_mm"):
        load_catalog(p)


def test_unreadable_catalog_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog(tmp_path / "nope.toml")
    p = tmp_path / "c.toml"
    p.write_text("[families.x\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_catalog(p)
    assert CATALOG_PATH.exists()


def test_cli_device_list_shows_every_family_and_the_user_file():
    res = runner.invoke(app, ["device", "list", "--catalog", str(EXAMPLE)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for key in ("balloon_expandable_thv", "self_expanding_thv", "coarctation_stent",
                "laa_occluder", "septal_occluder", "my_valve"):
        assert key in res.output
    assert "56.5–62.8" in res.output and "273–345" in res.output and "14–18" in res.output
    assert "sizing: Medtronic Evolut PRO+" in res.output
    assert "example: bench crush test" in res.output        # the user's sources shown too
    assert "radial stiffness 8 N/mm" in res.output


def test_cli_device_list_with_a_bad_catalog_names_the_key(tmp_path):
    p = _bad(tmp_path, "frame_height_mm = 21.0", "frame_height_mm = 1.0")
    res = runner.invoke(app, ["device", "list", "--catalog", str(p)], env={"COLUMNS": "300"})
    assert res.exit_code == 1
    assert "families.my_valve.sizes[1].frame_height_mm" in res.output
