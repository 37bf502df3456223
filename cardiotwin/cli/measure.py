"""``cardiotwin measure``: the aortic root and aorta as a TAVR planner measures them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cardiotwin.cli._common import (
    BloodSearchOpt,
    BloodThresholdOpt,
    CalciumThresholdOpt,
    NeckRatioOpt,
    PhaseOpt,
    ResampleOpt,
    RoleOpt,
    SegmenterOpt,
    SeriesOpt,
    StoreOpt,
    VolumeOpt,
    actor_for,
    console,
    errors,
    store_at,
)


def measure(
    dicom_dir: Annotated[Path, typer.Argument(help="Folder with the contrast CT (it may hold "
                                              "other series too; see --series).")],
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", help="Write the measurements (with uncertainties, levels, centreline "
        "and thresholds) to this .json file.")] = None,
    csv: Annotated[bool, typer.Option(
        "--csv", help="Print CSV (measurement, value, uncertainty, unit, level, note) instead "
        "of the table.")] = False,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="Your own segmentation (NIfTI, NRRD or DICOM SEG) instead of the "
        "built-in one; needs --label-map.")] = None,
    label_map: Annotated[str | None, typer.Option(
        "--label-map", help="Which values of --labels are which structure: "
        "'aorta=52,lv_blood=3' (lv_blood and aorta needed; branches and calcium "
        "optional).")] = None,
    landmarks: Annotated[Path | None, typer.Option(
        "--landmarks", help="The three annulus hinge points from a planning tool (JSON "
        "{\"coordinates\": \"LPS\"|\"RAS\", \"annulus_hinge_points_mm\": [[x,y,z]×3]} or a 3D "
        "Slicer markups file with points labelled hinge…): the annulus is measured in their "
        "plane.")] = None,
    series: SeriesOpt = None,
    resample: ResampleOpt = False,
    phase: PhaseOpt = None,
    volume: VolumeOpt = None,
    blood_threshold: BloodThresholdOpt = None,
    blood_search_range: BloodSearchOpt = None,
    calcium_threshold: CalciumThresholdOpt = None,
    neck_ratio: NeckRatioOpt = None,
    segmenter: SegmenterOpt = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Measure the aortic root and aorta as a TAVR planner does, each value ± its uncertainty.

    Annulus (area, perimeter, area- and perimeter-derived, minimum and maximum diameters) in the
    plane of the three hinge points (--landmarks) or the automatic annulus plane; LVOT (5 mm
    below), sinus of Valsalva (largest), sinotubular junction (waist, and its height),
    mid-ascending aorta, proximal and mid arch, proximal descending aorta (levels of the 2010
    ACCF/AHA thoracic aorta guideline); coronary ostia heights above the annulus where the
    arteries are visible; valve calcium volume and an Agatston-like score. Lengths in mm, areas
    in mm², volumes in mm³. The ± is half the spread when the thresholds move by one blood-pool
    standard deviation, combined with a voxel-size floor.

    The Agatston-like score is computed on the contrast CT (threshold above the enhanced blood):
    it is NOT the non-contrast Agatston score and cannot be compared with its thresholds.

    \b
    Examples:
      cardiotwin measure out/ph/dicom
      cardiotwin measure ct/ --landmarks hinges.json -o measurements.json
      cardiotwin measure ct/ --labels seg.nii.gz --label-map aorta=52,lv_blood=3 --csv
    """
    from cardiotwin import workflows

    with errors():
        res = workflows.measure_anatomy(
            dicom_dir, store=store_at(store), actor=actor_for(role), series=series, resample=resample,
            phase=phase, volume=volume, labels=labels, label_map=label_map, landmarks=landmarks,
            out=out, settings=workflows.BuildSettings(
                blood_threshold_hu=blood_threshold, calcium_threshold_hu=calcium_threshold,
                neck_ratio=neck_ratio, blood_search_range_hu=blood_search_range,
                segmenters=tuple(segmenter or ())))
        m = res.measurements
        if csv:
            sys.stdout.write(m.to_csv())
            return
        t = Table(title=f"{res.pseudonym}: anatomy (annulus from {m.annulus_source})")
        for c in ("measurement", "value ± uncertainty", "level"):
            t.add_column(c, justify="right" if c.startswith("value") else "left",
                         no_wrap=c != "level")
        for label, meas in m.rows():
            t.add_row(label, meas.text(0 if label.startswith("Agatston") else 1),
                      meas.level or meas.note)
        console.print(t)
        console.print(f"coronary ostia: {m.coronary_note}", highlight=False)
        console.print(f"thresholds: blood {m.blood_threshold_hu:.0f} HU, calcium "
                      f"{m.calcium_threshold_hu:.0f} HU (± {m.threshold_delta_hu:.0f} HU for the "
                      "uncertainties); the Agatston-like score is from a contrast CT, not the "
                      "non-contrast Agatston score", highlight=False)
        if res.json_path is not None:
            console.print(f"wrote {res.json_path}")
