"""``cardiotwin segment``: segment a contrast CT, or score a segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cardiotwin.cli._common import (
    BloodSearchOpt,
    BloodThresholdOpt,
    CalciumThresholdOpt,
    LeftHeartOnlyOpt,
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
    dicom_hints,
    errors,
    store_at,
)


def segment(
    dicom_dir: Annotated[Path | None, typer.Argument(
        help="Folder with the contrast CT to segment (not needed with --evaluate).")] = None,
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", help="Label file to write: .nii.gz, .nii or .nrrd (a .json sidecar with "
        "the structure names, volumes and how the blood pool was found goes beside it).")] = None,
    series: SeriesOpt = None,
    resample: ResampleOpt = False,
    phase: PhaseOpt = None,
    volume: VolumeOpt = None,
    blood_threshold: BloodThresholdOpt = None,
    blood_search_range: BloodSearchOpt = None,
    calcium_threshold: CalciumThresholdOpt = None,
    neck_ratio: NeckRatioOpt = None,
    left_heart_only: LeftHeartOnlyOpt = False,
    segmenter: SegmenterOpt = None,
    evaluate: Annotated[tuple[Path, Path] | None, typer.Option(
        "--evaluate", help="Score LABELS against TRUTH instead (two label files: NIfTI, NRRD or "
        "DICOM SEG): Dice, HD95 and mean surface distance per structure.")] = None,
    label_map: Annotated[str | None, typer.Option(
        "--map", help="With --evaluate: which values of LABELS are which structure, e.g. "
        "'aorta=3,lv_blood=1' (default: the names stored in the file).")] = None,
    list_segmenters: Annotated[bool, typer.Option(
        "--list-segmenters", help="List the installed segmentation plug-ins and whether each "
        "can run (weights found) or why not.")] = False,
    truth_map: Annotated[str | None, typer.Option(
        "--truth-map", help="With --evaluate: the same for TRUTH, e.g. 'aorta=52' for "
        "TotalSegmentator's total task.")] = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Segment a contrast CT into labelled structures, or score a segmentation against another.

    \b
    Examples:
      cardiotwin segment out/ph/dicom -o labels.nii.gz
      cardiotwin segment /media/ct-two-acquisitions -o labels.nii.gz --volume acquisition=2
      cardiotwin segment --evaluate labels.nii.gz out/ph/labels.nii.gz
      cardiotwin segment --evaluate mine.nii.gz totalseg.nii.gz --map aorta=3 --truth-map aorta=52
    """
    from cardiotwin import workflows
    from cardiotwin.errors import InputError

    with errors():
        if list_segmenters:
            found = workflows.segmenters()
            if not found:
                console.print("no segmentation plug-in installed (entry point group "
                              "'cardiotwin.segmenters'); the built-in segmentation is used")
            for p in found:
                state = "[green]available[/]" if p.available else f"[red]unavailable[/]: {p.reason}"
                console.print(f"{p.name} ({', '.join(p.structures)}): {state}  [{p.origin}]")
            return
        if evaluate is not None:
            quality = workflows.evaluate_segmentation(evaluate[0], evaluate[1],
                                                      label_map=label_map, reference_map=truth_map)
            t = Table(title=f"{evaluate[0].name} against {evaluate[1].name}")
            for c in ("structure", "Dice", "HD95 (mm)", "mean surface distance (mm)",
                      "volume (mL)", "reference (mL)"):
                t.add_column(c, justify="left" if c == "structure" else "right")
            for q in quality.scores:
                t.add_row(q.structure, f"{q.dice:.3f}",
                          "–" if q.hd95_mm is None else f"{q.hd95_mm:.2f}",
                          "–" if q.mean_surface_distance_mm is None
                          else f"{q.mean_surface_distance_mm:.2f}",
                          f"{q.volume_ml:.1f}", f"{q.reference_volume_ml:.1f}")
            console.print(t)
            return
        if dicom_dir is None or out is None:
            raise InputError("give the DICOM folder and -o LABELS.nii.gz (or --evaluate LABELS "
                             "TRUTH); see 'cardiotwin segment --help'")
        with dicom_hints("segment"):
            res = workflows.segment_dicom(
                dicom_dir, out, store=store_at(store), actor=actor_for(role), series=series,
                resample=resample, phase=phase, volume=volume, settings=workflows.BuildSettings(
                    blood_threshold_hu=blood_threshold, calcium_threshold_hu=calcium_threshold,
                    neck_ratio=neck_ratio, segmenters=tuple(segmenter or ()),
                    blood_search_range_hu=blood_search_range,
                    heart_structures=not left_heart_only))
        t = Table(title=f"{res.pseudonym}: {res.labels_path}")
        for c in ("structure", "value", "volume (mL)"):
            t.add_column(c)
        for name, value in res.structures.items():
            t.add_row(name, str(value), f"{res.volumes_ml[name]:.1f}")
        console.print(t)
        console.print(f"sidecar: {res.sidecar_path}")
