"""End to end through the audited use cases: DICOM → twin → baseline flow → device → flow."""

from __future__ import annotations

import numpy as np
import pytest

from cardiotwin import study, workflows
from cardiotwin.errors import AccessDenied, InputError
from cardiotwin.store import Actor


def test_twin_is_built_and_persisted_with_provenance(coarse_demo):
    store, actor, twin = coarse_demo["store"], coarse_demo["actor"], coarse_demo["twin"]
    assert twin.version >= 1 and twin.pseudonym.startswith("PT-")
    again = workflows.open_twin(twin.pseudonym, store=store, actor=actor)
    assert again.version == twin.version
    assert again.anatomy["landmarks"] == twin.anatomy["landmarks"]
    prov = again.provenance
    assert len(prov["inputs"]["dicom"]) == 64  # SHA-256 of the DICOM files
    for stage in ("read_dicom", "segment", "landmarks", "surface", "mesh"):
        assert prov["timings_s"][stage] > 0
    base = study.FlowSummary.from_dict(again.results[0]["summary"])
    # steady iteration ended converged, or with outlet flows and pressures settled (steady.py)
    assert base.status in ("converged", "settled"), base.status_reason
    # mass conservation of the baseline solve (DESIGN: outlet flows sum to inflow)
    assert abs(base.mass_imbalance) < 5e-3


def test_measured_annulus_matches_the_phantom(coarse_demo):
    lms = coarse_demo["twin"].landmarks
    truth = coarse_demo["phantom"].truth.landmarks
    # coarse (1.5 mm) phantom: area-derived diameter within 2 mm of the construction value
    assert lms.annulus_diameter_mm == pytest.approx(truth.annulus_diameter_mm, abs=2.0)


def test_twin_keeps_the_valve_calcium_for_the_device_mechanics(coarse_demo):
    ctx = coarse_demo["twin"].anatomy["device_context"]
    truth = coarse_demo["phantom"].truth
    pts = np.asarray(ctx["calcium_points_mm"])
    centre = np.asarray(coarse_demo["twin"].landmarks.annulus_centre_mm)
    # every stored calcium point lies within the 25 mm search radius, and each of the phantom's
    # nodules has stored points within 3 mm (two 1.5 mm voxels) of its centre
    assert len(pts) > 0
    assert np.linalg.norm(pts - centre, axis=1).max() <= 25.0
    for nodule in truth.calcium_nodules_mm:
        c = np.asarray(nodule[:3] if len(nodule) > 3 else nodule, dtype=float)
        assert np.linalg.norm(pts - c, axis=1).min() < 3.0
    assert ctx["calcium_voxel_mm3"] == pytest.approx(1.5**3)


def test_device_lowers_the_gradient(coarse_demo):
    store, actor, twin = coarse_demo["store"], coarse_demo["actor"], coarse_demo["twin"]
    reh = workflows.rehearse(twin.pseudonym, store=store, actor=actor, nominal_diameter_mm=23.0)
    before, after = reh.before, reh.after
    # 0.8 cm² stenosis vs a 23 mm valve: the gradient must fall, by more than half
    assert before.peak_gradient_mmhg > 15.0
    assert after.peak_gradient_mmhg < 0.5 * before.peak_gradient_mmhg
    assert after.status in ("converged", "settled"), after.status_reason
    assert abs(after.mass_imbalance) < 5e-3
    rows = {r.metric: r for r in reh.rows()}
    assert rows["Peak transvalvular gradient"].after == after.peak_gradient_mmhg


def test_every_access_is_audited_and_the_chain_verifies(coarse_demo):
    store, twin = coarse_demo["store"], coarse_demo["twin"]
    officer = Actor(username="po", role="privacy_officer", client="pytest")
    recs = store.audit_records(actor=officer, purpose="test", pseudonym=twin.pseudonym)
    actions = {(r["action"] if isinstance(r, dict) else r.action) for r in recs}
    assert {"create", "read"} <= actions or {"write", "read"} <= actions
    assert store.verify_audit().ok


def test_researcher_cannot_rehearse(coarse_demo):
    store, twin = coarse_demo["store"], coarse_demo["twin"]
    with pytest.raises(AccessDenied):
        workflows.rehearse(twin.pseudonym, store=store,
                           actor=Actor(username="r", role="researcher", client="pytest"))


def test_logs_carry_pseudonyms_not_identity(coarse_demo):
    text = coarse_demo["log_path"].read_text()
    assert coarse_demo["twin"].pseudonym in text  # workflows log the pseudonym
    # the phantom's DICOM identity (cardiotwin.imaging.dicom.write_ct_series defaults)
    for ident in ("PHANTOM^DEMO", "CT-PHANTOM-0001"):
        assert ident not in text


def test_build_twin_refuses_a_series_that_is_not_ct(shared_data, tmp_path):
    """A folder with only an MR series: the CT-only step says so before any work is stored."""
    import shutil

    from cardiotwin.errors import DicomError

    folder = tmp_path / "mr"
    folder.mkdir()
    shutil.copy(shared_data / "dicom" / "dcm_qa_ts" / "In" / "1.dcm", folder / "mr.dcm")
    store = workflows.open_store(tmp_path / "store")
    actor = Actor(username="dr-a", role="clinician", client="test")
    with pytest.raises(DicomError, match="is MR, not CT"):
        workflows.build_twin(folder, store=store, actor=actor)
    assert workflows.list_patients(store=store, actor=actor) == []


def _read_csv(path) -> dict:
    import csv

    import numpy as np

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    data = np.array(rows[1:], dtype=float)
    return {name: data[:, i] for i, name in enumerate(rows[0])}


PULSATILE_TRIAL = study.CycleSettings(t_end_ms=30.0)  # early systole: a trial run


def test_pulsatile_rehearsal_runs_the_calibrated_cycle_and_reuses_the_native_run(coarse_demo):
    import numpy as np

    from cardiotwin.physics.waveforms import AorticFlowWaveform

    store, actor, twin = coarse_demo["store"], coarse_demo["actor"], coarse_demo["twin"]
    reh = workflows.rehearse(twin.pseudonym, store=store, actor=actor, nominal_diameter_mm=23.0,
                             cycle=PULSATILE_TRIAL)
    assert reh.pulsatile
    before, after = reh.before, reh.after
    phys = twin.physiology
    wave = AorticFlowWaveform(heart_rate_bpm=phys.heart_rate_bpm,
                              stroke_volume_ml=phys.stroke_volume_ml,
                              ejection_time_s=phys.effective_ejection_time_s)
    for run in (before, after):
        assert run.n_steps == 60 and not run.whole_cycle  # Δt 0.5 ms
        assert run.mass_imbalance_max < 5e-3  # issue 5: outlets sum to the inflow ±0.5 %
        tr = _read_csv(f"{run.fields_dir}/traces.csv")
        assert len(tr["t_s"]) == 60
        # the patient's waveform enters at the inlet (flux of the imposed profile)
        q = 1e6 * wave(tr["t_s"])
        np.testing.assert_allclose(tr["inflow_ml_s"], q, atol=2e-3 * q.max())
        # the outlets start from the periodic state of the fitted Windkessels: at the start of
        # ejection the aortic pressure is the diastolic pressure (+ Rp·Q of the first 0.5 ms)
        assert tr["aortic_pressure_mmhg"][0] == pytest.approx(phys.diastolic_bp_mmhg, abs=1.5)
        # and it rises with ejection
        assert tr["aortic_pressure_mmhg"][-1] > tr["aortic_pressure_mmhg"][0] + 5.0  # 16 measured
    # The test twin's mesh (2-4 mm) is too coarse for the 4 mm native-valve plate: a third of
    # the flow crosses it (majority-porous cells leave gaps), and the result must say so.
    assert before.valve_leak_fraction > study.LEAK_WARNING_FRACTION
    assert any("crosses the solid part of the native valve" in w for w in before.warnings)
    assert any("only 30 ms of the" in w for w in after.warnings)
    # 0.8 cm² stenosis vs a 23 mm valve (2.4 cm²): a slower jet and a smaller gradient
    assert after.peak_jet_velocity_m_s < 0.85 * before.peak_jet_velocity_m_s
    assert after.peak_gradient_mmhg < before.peak_gradient_mmhg
    rows = {r.metric: r for r in reh.rows()}
    assert rows["Mean transvalvular gradient (forward flow)"].before == before.mean_gradient_mmhg
    # the native-valve cycle is stored once and reused by the next rehearsal with the same settings
    again = workflows.rehearse(twin.pseudonym, store=store, actor=actor, nominal_diameter_mm=26.0,
                               cycle=PULSATILE_TRIAL)
    cycles = store.list_results(twin.pseudonym, actor=actor, purpose="test", kind="flow.cycle")
    assert [c["label"] for c in cycles] == ["baseline"]
    assert again.before == before
    assert again.after.orifice_area_cm2 > after.orifice_area_cm2
    stored = store.list_results(twin.pseudonym, actor=actor, purpose="test", kind="rehearsal")
    assert stored[-1]["summary"]["after"]["mode"] == "pulsatile"
    assert store.verify_audit().ok


class _Interrupted(Exception):
    """Stands for Ctrl-C or a closed session in the middle of a pulsatile run."""


def test_interrupted_cycle_resumes_from_its_checkpoint_with_the_same_result(coarse_demo, tmp_path):
    """A pulsatile run stopped at step 13 of 20 (checkpoints every 5 steps) and called again
    continues from step 10 and gives the uninterrupted run's traces (iterative-solver tolerance);
    a call with other settings in the same folder starts afresh instead."""
    import numpy as np

    store, twin = coarse_demo["store"], coarse_demo["twin"]
    lms = twin.landmarks
    domain = workflows.twin_fluid_domain(twin, store)
    region = study.native_region(lms)
    cfg = study.CycleSettings(t_end_ms=10.0, checkpoint_every_ms=2.5, write_every=0)

    def run(out, settings=cfg, progress=study.no_progress):
        return study.run_cycle(domain, lms, twin.physiology, region, label="baseline",
                                   out_dir=out, settings=settings, progress=progress)

    whole = run(tmp_path / "whole")
    assert whole.summary.resumed_from_step == 0

    def stop_at_13(fraction, message):
        if message.startswith("step 13/"):
            raise _Interrupted(message)

    with pytest.raises(_Interrupted):
        run(tmp_path / "cut", progress=stop_at_13)
    assert [d.name for d in (tmp_path / "cut" / "checkpoints").iterdir()] == ["step_000010"]
    resumed = run(tmp_path / "cut")
    assert resumed.summary.resumed_from_step == 10
    assert not (tmp_path / "cut" / "checkpoints").exists()  # removed once finished
    a, b = _read_csv(whole.files["traces"]), _read_csv(resumed.files["traces"])
    assert a.keys() == b.keys() and len(b["t_s"]) == 20
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-6 * np.abs(a[name]).max(),
                                   err_msg=name)
    for k in ("peak_gradient_mmhg", "mean_gradient_mmhg", "aortic_systolic_mmhg",
              "peak_jet_velocity_m_s", "valve_leak_fraction"):
        assert getattr(resumed.summary, k) == pytest.approx(getattr(whole.summary, k), rel=1e-6), k

    # a checkpoint of other inputs is never continued: another LES constant starts at step 0
    with pytest.raises(_Interrupted):
        run(tmp_path / "cut", progress=stop_at_13)
    other = run(tmp_path / "cut", settings=study.CycleSettings(
        t_end_ms=10.0, checkpoint_every_ms=2.5, write_every=0, smagorinsky_cs=0.1))
    assert other.summary.resumed_from_step == 0
    with pytest.raises(InputError, match="checkpoint_every_ms must be 0"):
        study.CycleSettings(dt_ms=0.5, checkpoint_every_ms=0.2)


def _tool_labels(phantom, path):
    """The phantom's labels as another tool would write them: its own values (aorta 52 with the
    branches 53, LV 61, calcium 70), NIfTI in RAS."""
    import numpy as np

    from cardiotwin.imaging import export
    from cardiotwin.imaging.volume import LabelMap

    lab = phantom.labels
    arr = np.zeros(lab.array.shape, dtype=np.int16)
    for name, value in (("aorta", 52), ("branches", 53), ("lv_blood", 61), ("calcium", 70)):
        arr[lab.mask(name)] = value
    return export.write_nifti(LabelMap(lab.volume.with_array(arr), {"background": 0}), path)


def test_build_twin_from_your_own_labels(coarse_demo, tmp_path):
    """`twin build --labels FILE --label-map ...`: the tool's labels replace the segmentation;
    the annulus measured on them is as close to the phantom's construction as the built-in
    segmentation's (coarse 1.5 mm phantom: within 2 mm), and the twin says where its labels
    came from."""
    from typer.testing import CliRunner

    from cardiotwin.cli import app

    labels = _tool_labels(coarse_demo["phantom"], tmp_path / "tool.nii.gz")
    store_dir = tmp_path / "store"
    res = CliRunner().invoke(app, [
        "twin", "build", str(coarse_demo["dicom_dir"]), "--labels", str(labels),
        "--label-map", "aorta=52,branches=53,lv_blood=61,calcium=70", "--no-flow",
        "--h-max", "4", "--h-min", "2", "--store", str(store_dir)])
    assert res.exit_code == 0, res.output
    store = workflows.open_store(store_dir)
    actor = coarse_demo["actor"]
    [patient] = workflows.list_patients(store=store, actor=actor)
    twin = workflows.open_twin(patient.pseudonym, store=store, actor=actor)
    truth = coarse_demo["phantom"].truth.landmarks
    assert twin.landmarks.annulus_diameter_mm == pytest.approx(truth.annulus_diameter_mm, abs=2.0)
    seg = twin.anatomy["segmentation"]
    assert seg["source"] == "user labels" and seg["label_map"]["aorta"] == [52]
    assert twin.provenance["inputs"]["labels"] == seg["labels_sha256"]


def test_your_own_labels_are_checked_before_anything_is_stored(coarse_demo, tmp_path):
    labels = _tool_labels(coarse_demo["phantom"], tmp_path / "tool.nii.gz")
    store = workflows.open_store(tmp_path / "store")
    actor = coarse_demo["actor"]
    for label_map, says in [(None, "say which values"), ("aorta=52", "needs lv_blood"),
                            ("aorta=52,lv_blood=51", "no voxel with value 51")]:
        with pytest.raises(InputError, match=says):
            workflows.build_twin(coarse_demo["dicom_dir"], store=store, actor=actor,
                                 labels=labels, label_map=label_map,
                                 settings=workflows.BuildSettings(run_baseline=False))
    assert workflows.list_patients(store=store, actor=actor) == []


def test_the_twin_carries_the_anatomy_gate_it_passed(coarse_demo):
    """The build ran the quality gate before meshing, stored it with the twin, and its annulus
    check measured the twin's own annulus."""
    twin = workflows.open_twin(coarse_demo["twin"].pseudonym, store=coarse_demo["store"],
                               actor=coarse_demo["actor"])
    gate = twin.quality_gate
    assert gate is not None and gate.status in ("pass", "warn"), gate.messages()
    names = {c.name for c in gate.checks}
    assert {"lv_blood_volume", "annulus_diameter", "outlet_count"} <= names, names
    annulus = next(c for c in gate.checks if c.name == "annulus_diameter")
    assert annulus.value == pytest.approx(twin.landmarks.annulus_diameter_mm)


def test_build_twin_with_the_planners_hinge_points(coarse_demo, tmp_path):
    """`twin build --landmarks FILE`: the annulus plane is the one through the planner's hinge
    points (here on the phantom's true annulus, 5° off its normal) and the ostium height above
    it is stored with the twin."""
    import json

    import numpy as np

    from tests.geometry.test_landmarks import _hinges

    truth = coarse_demo["phantom"].truth.landmarks
    ostium = np.asarray(truth.annulus_centre_mm) + 13.0 * np.asarray(truth.annulus_normal)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"coordinates": "LPS",
                                "annulus_hinge_points_mm": _hinges(truth, tilt_deg=5.0).tolist(),
                                "coronary_ostia_mm": {"left": ostium.tolist()}}))
    store = workflows.open_store(tmp_path / "store")
    twin = workflows.build_twin(coarse_demo["dicom_dir"], store=store, actor=coarse_demo["actor"],
                                landmarks=path, settings=workflows.BuildSettings(
                                    h_max_mm=4.0, h_min_mm=2.0, run_baseline=False))
    angle = np.degrees(np.arccos(np.dot(twin.landmarks.annulus_normal, truth.annulus_normal)))
    assert angle == pytest.approx(5.0, abs=1e-6)
    height = twin.anatomy["planning"]["coronary_ostia_height_mm"]["left"]
    assert height == pytest.approx(13.0 * np.cos(np.radians(5.0)), abs=1.0)
    assert twin.provenance["inputs"]["landmarks"] == twin.anatomy["planning"]["landmarks_sha256"]


def test_build_twin_from_your_own_surface(coarse_demo, tmp_path):
    """`twin build --surface FILE`: a lumen surface written in RAS (as Slicer writes it) is
    recognised as RAS, meshed with flow extensions and named caps; and an unknown segmentation
    plug-in is refused with the list of those installed."""
    import numpy as np
    import trimesh
    from typer.testing import CliRunner

    from cardiotwin.cli import app
    from cardiotwin.geometry.surface import fluid_surface

    ph = coarse_demo["phantom"]
    fs = fluid_surface(ph.labels, ph.truth.landmarks)
    path = tmp_path / "lumen.stl"
    trimesh.Trimesh(np.asarray(fs.mesh.vertices) * [-1.0, -1.0, 1.0], fs.mesh.faces).export(path)
    store_dir = tmp_path / "store"
    res = CliRunner().invoke(app, [
        "twin", "build", str(coarse_demo["dicom_dir"]), "--surface", str(path), "--no-flow",
        "--h-max", "4", "--h-min", "2", "--store", str(store_dir)])
    assert res.exit_code == 0, res.output
    store = workflows.open_store(store_dir)
    actor = coarse_demo["actor"]
    [patient] = workflows.list_patients(store=store, actor=actor)
    twin = workflows.open_twin(patient.pseudonym, store=store, actor=actor)
    assert twin.anatomy["surface"]["convention"] == "RAS"
    assert {c["name"] for c in twin.mesh["caps"]} == {c.name for c in fs.caps}
    res = CliRunner().invoke(app, ["twin", "build", str(coarse_demo["dicom_dir"]), "--segmenter",
                                   "nosuchmodel", "--no-flow", "--store", str(store_dir)])
    assert res.exit_code == 1 and "nosuchmodel" in res.output and "Traceback" not in res.output


def test_build_settings_pass_the_segmentation_overrides():
    """`--blood-threshold`, `--calcium-threshold`, `--neck-ratio` and `--blood-search-range`
    reach SegmentationSettings; left out, its defaults stay."""
    from cardiotwin.imaging.segment import SegmentationSettings

    seg = workflows.BuildSettings(blood_threshold_hu=250.0, calcium_threshold_hu=600.0,
                                  neck_ratio=0.5,
                                  blood_search_range_hu=(120.0, 900.0)).segmentation_settings()
    assert (seg.blood_threshold_hu, seg.calcium_threshold_hu, seg.neck_ratio,
            seg.blood_search_range_hu) == (250.0, 600.0, 0.5, (120.0, 900.0))
    assert workflows.BuildSettings().segmentation_settings() == SegmentationSettings()
    assert SegmentationSettings().heart_structures  # the CLI's --left-heart-only turns it off
    assert not workflows.BuildSettings(heart_structures=False).segmentation_settings(
    ).heart_structures
