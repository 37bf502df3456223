"""Segmentation plug-ins: discovery through a real entry point, per-structure replacement, errors.

The model is one the test builds itself (tests/imaging/tiny_segmenter.py): per-structure
logistic regressions on per-voxel features, fitted on the 2 mm phantom of seed 0 and saved as an
``.npz`` file; it is exposed through an entry point of a ``*.dist-info`` folder written into
``tmp_path`` (the way pip installs a package), found by ``importlib.metadata``. Ground truth:
the phantom's exact labels (cardiotwin.imaging.phantom).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cardiotwin.errors import InputError, SegmentationError
from cardiotwin.imaging import plugins
from cardiotwin.imaging.metrics import dice
from cardiotwin.imaging.phantom import PhantomParameters, make_phantom
from cardiotwin.imaging.plugins import (
    ENTRY_POINT_GROUP,
    PluginStatus,
    available_segmenters,
    combine,
    get_segmenter,
    labels_on_ct,
    parse_segmenter_choice,
    register_segmenter,
    segment_with_plugins,
    structure_sources,
    unregister_segmenter,
)
from cardiotwin.imaging.segment import Segmentation, segment_heart
from cardiotwin.imaging.volume import LABELS, LabelMap, Volume
from tests.imaging.tiny_segmenter import WEIGHTS_ENV, fit_tiny_model, save_weights

SPACING_MM = (2.0, 2.0, 2.0)
DIST = "cardiotwin_tiny_model-0.1.dist-info"
ENTRY_POINTS = {
    "tiny": "tests.imaging.tiny_segmenter:TinySegmenter",
    "failing": "tests.imaging.tiny_segmenter:FailingSegmenter",
    "broken": "cardiotwin_no_such_module:Segmenter",
}


@pytest.fixture(scope="module")
def phantoms():
    """Training phantom (seed 0) and the phantom the plug-in is applied to (seed 1), 2 mm."""
    params = PhantomParameters(spacing_mm=SPACING_MM)
    return make_phantom(params, seed=0), make_phantom(params, seed=1)


@pytest.fixture(scope="module")
def trained_weights(phantoms, tmp_path_factory) -> Path:
    train, _ = phantoms
    model = fit_tiny_model(train.ct, train.labels, {"aorta": ("aorta", "branches"),
                                                    "myocardium": ("myocardium",)})
    return save_weights(tmp_path_factory.mktemp("tiny") / "tiny_weights.npz", model)


@pytest.fixture(scope="module")
def default_seg(phantoms) -> Segmentation:
    return segment_heart(phantoms[1].ct)


def install_entry_points(site: Path, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution in ``site`` declaring ``entry_points``."""
    info = site / DIST
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cardiotwin-tiny-model\n"
                                   "Version: 0.1\n", encoding="utf-8")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def installed(tmp_path, monkeypatch, trained_weights) -> Path:
    """The tiny model installed: entry points on sys.path, its weights at $CARDIOTWIN_TINY_WEIGHTS.

    Returns the weights file (a copy the test may delete).
    """
    site = tmp_path / "site-packages"
    install_entry_points(site, ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))  # also invalidates importlib's caches
    weights = shutil.copy(trained_weights, tmp_path / "tiny_weights.npz")
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    return Path(weights)


def statuses() -> dict[str, PluginStatus]:
    return {s.name: s for s in available_segmenters()}


# ---------------------------------------------------------------------------------------------
# discovery


def test_entry_point_discovered_and_available(installed):
    found = statuses()
    tiny = found["tiny"]
    assert tiny.available, tiny.reason
    assert tiny.structures == ("aorta", "myocardium")
    assert "cardiotwin-tiny-model 0.1" in tiny.origin
    assert "tests.imaging.tiny_segmenter:TinySegmenter" in tiny.origin
    assert str(installed) in tiny.reason  # the weights it will use
    assert found["failing"].available  # failing only when it runs


def test_missing_weights_reported_not_raised(installed):
    installed.unlink()
    tiny = statuses()["tiny"]
    assert not tiny.available
    assert f"weights not found at {installed}" in tiny.reason
    with pytest.raises(SegmentationError, match=r"segmenter 'tiny' is not available: weights "
                       r"not found at .*tiny_weights\.npz"):
        get_segmenter("tiny")


def test_missing_weights_refused_before_the_default_runs(installed, phantoms, monkeypatch):
    installed.unlink()

    def default_must_not_run(*args, **kwargs):
        raise AssertionError("the default segmentation ran before the plug-ins were checked")

    monkeypatch.setattr(plugins, "segment_heart", default_must_not_run)
    with pytest.raises(SegmentationError, match="'tiny' is not available"):
        segment_with_plugins(phantoms[1].ct, use=("tiny",))


def test_plugin_that_fails_to_import_is_listed_with_the_reason(installed):
    broken = statuses()["broken"]  # discovery itself does not raise
    assert not broken.available
    assert "could not be imported (ModuleNotFoundError" in broken.reason
    assert "cardiotwin_no_such_module" in broken.reason
    assert "cardiotwin-tiny-model" in broken.reason  # which package to reinstall or remove
    with pytest.raises(SegmentationError, match="'broken' is not available: could not be imported"):
        get_segmenter("broken")


def test_unknown_segmenter_names_those_found(installed):
    with pytest.raises(InputError, match=r"no segmenter named 'nnunet' \(found: .*tiny "
                       r"\(available\).*broken \(unavailable\)"):
        get_segmenter("nnunet")


def test_not_installed_not_listed():
    assert not set(statuses()) & set(ENTRY_POINTS)


def test_registered_in_code(trained_weights):
    from tests.imaging.tiny_segmenter import TinySegmenter

    register_segmenter("tiny_code", TinySegmenter(trained_weights))
    try:
        with pytest.raises(InputError, match="already registered"):
            register_segmenter("tiny_code", TinySegmenter(trained_weights))
        s = statuses()["tiny_code"]
        assert s.available and s.origin == "registered in code"
    finally:
        unregister_segmenter("tiny_code")
    assert "tiny_code" not in statuses()


@pytest.mark.parametrize("structures, reason", [
    (("left_atrium",), r"unknown structure\(s\) \['left_atrium'\]"),
    ((), "provides no structure"),
])
def test_segmenter_with_unknown_structures_is_unavailable(structures, reason):
    class Odd:
        name = "odd"

        def __init__(self):
            self.structures = structures

        def check(self):
            return PluginStatus(True)

        def segment(self, ct):
            raise AssertionError("never run")

    register_segmenter("odd", Odd)
    try:
        s = statuses()["odd"]
        assert not s.available
        assert re.search(reason, s.reason)
    finally:
        unregister_segmenter("odd")


def test_check_that_raises_is_a_reason():
    class Crashy:
        name = "crashy"
        structures = ("aorta",)

        def check(self):
            raise OSError("driver not found")

        def segment(self, ct):
            raise AssertionError("never run")

    register_segmenter("crashy", Crashy())
    try:
        s = statuses()["crashy"]
        assert not s.available and "check() failed (OSError: driver not found)" in s.reason
    finally:
        unregister_segmenter("crashy")


def test_unavailable_status_needs_a_reason():
    with pytest.raises(InputError, match="needs a reason"):
        PluginStatus(False)


# ---------------------------------------------------------------------------------------------
# replacing the default per structure


def test_plugin_replaces_default_per_structure(installed, phantoms, default_seg):
    _, ph = phantoms
    seg = segment_with_plugins(ph.ct, use=("tiny",), default=default_seg)
    truth, out = ph.labels, seg.labels
    assert structure_sources(seg) == {"lv_blood": "default", "myocardium": "tiny",
                                      "aorta": "tiny", "calcium": "default"}
    entry = seg.report["plugins"][0]
    assert entry["name"] == "tiny" and entry["structures"] == ["aorta", "myocardium"]
    assert "cardiotwin-tiny-model 0.1" in entry["origin"] and entry["time_s"] > 0
    # names map to cardiotwin's values, not the model's own (aorta=7, myocardium=9)
    assert out.names["aorta"] == LABELS["aorta"] and out.names["myocardium"] == LABELS["myocardium"]
    assert set(np.unique(out.array)) <= {0, 1, 2, 3, 5}
    # Dice against the phantom's truth (seed 1; the model was fitted on seed 0). Measured:
    # aorta 0.9957 (default alone 0.9972), myocardium 0.9998 (the default has none),
    # lv_blood 0.9956 (the plug-in's aorta took 168 voxels of the default's LV), calcium 1.0.
    assert dice(truth.mask("aorta", "branches"), out.mask("aorta")) >= 0.99
    assert dice(truth.mask("myocardium"), out.mask("myocardium")) >= 0.99
    assert dice(truth.mask("lv_blood"), out.mask("lv_blood")) >= 0.99
    assert dice(truth.mask("calcium"), out.mask("calcium")) >= 0.90
    # voxels of the default's own structures are unchanged except where the plug-in put its own
    plugin_voxels = out.mask("aorta", "myocardium")
    for name in ("lv_blood", "calcium"):
        assert np.array_equal(out.mask(name), default_seg.labels.mask(name) & ~plugin_voxels)
    took = entry["took_voxels_from"]["aorta"].get("lv_blood", 0)
    assert took == int((default_seg.labels.mask("lv_blood") & out.mask("aorta")).sum())
    assert seg.blood_threshold_hu == default_seg.blood_threshold_hu


def test_plugin_for_some_of_its_structures(installed, phantoms, default_seg):
    _, ph = phantoms
    seg = segment_with_plugins(ph.ct, use=("tiny:myocardium",), default=default_seg)
    assert structure_sources(seg)["aorta"] == "default"
    assert structure_sources(seg)["myocardium"] == "tiny"
    assert np.array_equal(seg.labels.mask("aorta"), default_seg.labels.mask("aorta"))
    with pytest.raises(InputError, match="'tiny' does not provide lv_blood; it provides aorta, "
                       "myocardium"):
        segment_with_plugins(ph.ct, use=("tiny:lv_blood",), default=default_seg)


def test_plugin_that_raises_inside_segment_is_named(installed, phantoms, default_seg):
    with pytest.raises(SegmentationError, match=r"segmenter 'failing' failed on this CT "
                       r"\(RuntimeError: CUDA out of memory \(simulated\)\)") as err:
        segment_with_plugins(phantoms[1].ct, use=("failing",), default=default_seg)
    assert isinstance(err.value.__cause__, RuntimeError)


def test_plugin_returning_nothing_for_its_structure(phantoms, default_seg):
    class Blind:
        name = "blind"
        structures = ("aorta",)

        def check(self):
            return PluginStatus(True)

        def segment(self, ct):
            return LabelMap(ct.with_array(np.zeros(ct.shape, np.uint8)), {"background": 0,
                                                                          "aorta": 3})

    register_segmenter("blind", Blind)
    try:
        with pytest.raises(SegmentationError, match="'blind' returned no aorta for this CT"):
            segment_with_plugins(phantoms[1].ct, use=("blind",), default=default_seg)
    finally:
        unregister_segmenter("blind")


def _small_default() -> Segmentation:
    grid = Volume(np.zeros((4, 4, 4), np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    arr = np.zeros(grid.shape, np.uint8)
    arr[0] = LABELS["lv_blood"]
    arr[1] = LABELS["aorta"]
    arr[2, 0, 0] = LABELS["calcium"]
    names = {k: LABELS[k] for k in ("background", "lv_blood", "aorta", "calcium")}
    return Segmentation(LabelMap(grid.with_array(arr), names), 200.0, 600.0, {"method": "x"})


def test_combine_overwrites_only_the_named_structures():
    default = _small_default()
    grid = default.labels.volume
    theirs = np.zeros(grid.shape, np.uint8)
    theirs[2] = 11  # its aorta: one slab lower than the default's, over the calcium voxel
    theirs[0, 0, 0] = 11  # and one voxel of the default's LV
    theirs[3] = 12  # a structure that is not asked for
    plugin = LabelMap(grid.with_array(theirs), {"background": 0, "aorta": 11, "valve": 12})
    out = combine(default, plugin, structures=("aorta",), source="m")
    a = out.labels.array
    assert (a[1] == 0).all()  # the default's aorta is gone
    assert (a[2] == LABELS["aorta"]).all()
    assert a[0, 0, 0] == LABELS["aorta"] and (a[0].ravel()[1:] == LABELS["lv_blood"]).all()
    assert (a[3] == 0).all()  # "valve" was not asked for
    assert out.report["plugins"][0]["took_voxels_from"] == {"aorta": {"lv_blood": 1, "calcium": 1}}
    assert out.report["structure_sources"] == {"lv_blood": "default", "aorta": "m"}  # no calcium left
    assert out.report["method"] == "x"
    with pytest.raises(InputError, match="have no myocardium"):
        combine(default, plugin, structures=("myocardium",), source="m")
    with pytest.raises(InputError, match="give some of"):
        combine(default, plugin, structures=("liver",), source="m")


def test_labels_on_another_grid_are_resampled():
    default = _small_default()
    grid = default.labels.volume
    # the tool's labels at half the resolution (2 mm voxels), its own value 52 for the aorta
    coarse = Volume(np.zeros((2, 2, 2), np.uint8), (2.0, 2.0, 2.0), (0.5, 0.5, 0.5))
    arr = np.zeros(coarse.shape, np.uint8)
    arr[1] = 52
    tool = LabelMap(coarse.with_array(arr), {"background": 0, "aorta_tool": 52})
    ours = labels_on_ct(tool, grid, spec={"aorta": (52,)})
    assert ours.names == {"background": 0, "aorta": LABELS["aorta"]}
    assert (ours.array[2:] == LABELS["aorta"]).all() and (ours.array[:2] == 0).all()
    out = combine(default, ours, structures=("aorta",), source="tool")
    assert out.labels.volume_ml("aorta") == pytest.approx(32e-3)


@pytest.mark.parametrize("text, expected", [
    ("tiny", ("tiny", None)),
    ("tiny:aorta+myocardium", ("tiny", ("aorta", "myocardium"))),
    (" tiny : aorta ", ("tiny", ("aorta",))),
])
def test_parse_segmenter_choice(text, expected):
    assert parse_segmenter_choice(text) == expected


@pytest.mark.parametrize("text", ["", ":aorta", "tiny:", "tiny:liver"])
def test_parse_segmenter_choice_refuses(text):
    with pytest.raises(InputError, match="segmenter choice"):
        parse_segmenter_choice(text)


def test_registered_segmenter_comes_before_an_entry_point_of_that_name(installed):
    class Other:
        name = "tiny"
        structures = ("valve",)

        def check(self):
            return PluginStatus(False, "not today")

        def segment(self, ct):
            raise AssertionError("never run")

    register_segmenter("tiny", Other)
    try:
        s = statuses()["tiny"]
        assert (s.origin, s.structures, s.reason) == ("registered in code", ("valve",), "not today")
    finally:
        unregister_segmenter("tiny")
    assert statuses()["tiny"].available  # the entry point again
