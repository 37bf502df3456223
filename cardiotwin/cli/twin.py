"""``cardiotwin twin build``, ``list`` and ``show`` (``twin serve`` is in :mod:`.live`)."""

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
    RoleOpt,
    SegmenterOpt,
    StoreOpt,
    VolumeOpt,
    actor_for,
    console,
    dicom_hints,
    errors,
    print_anatomy,
    print_estimate,
    print_gate,
    progress,
    store_at,
)

twin_app = typer.Typer(help="Build, list and inspect patient twins.", no_args_is_help=True)


def _physiology(hr: float, sv: float, sbp: float, dbp: float):
    from cardiotwin.twin.state import Physiology

    return Physiology(heart_rate_bpm=hr, stroke_volume_ml=sv, systolic_bp_mmhg=sbp,
                      diastolic_bp_mmhg=dbp)


@twin_app.command("build")
def twin_build(
    dicom_dir: Annotated[Path, typer.Argument(help="Folder with the contrast CT (it may hold "
                                              "other series too; see --series).")],
    series: Annotated[str | None, typer.Option(
        "--series", help="SeriesInstanceUID or rule (largest-contrast-ct, phase=75, ...; see "
        "'cardiotwin dicom scan'). Default: the only series, else largest-contrast-ct.")] = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
    heart_rate: Annotated[float, typer.Option("--hr", help="Heart rate, bpm.")] = 70.0,
    stroke_volume: Annotated[float, typer.Option("--sv", help="Stroke volume, mL.")] = 70.0,
    systolic: Annotated[float, typer.Option("--sbp", help="Systolic blood pressure, mmHg.")] = 130.0,
    diastolic: Annotated[float, typer.Option("--dbp", help="Diastolic blood pressure, mmHg.")] = 75.0,
    h_max: Annotated[float, typer.Option(help="Mesh size away from the valve, mm.")] = 3.0,
    h_min: Annotated[float, typer.Option(help="Mesh size near the valve, mm.")] = 1.2,
    no_flow: Annotated[bool, typer.Option("--no-flow", help="Skip the baseline flow solve.")] = False,
    mesh_timeout: Annotated[float, typer.Option(
        "--mesh-timeout", help="Stop meshing after this many seconds with a message naming "
        "the gmsh step that was slow.")] = 900.0,
    mesh_algorithm: Annotated[str, typer.Option(
        "--mesh-algorithm", help="gmsh 3-D algorithm: delaunay, hxt (faster on large "
        "meshes), frontal.")] = "delaunay",
    surface_mesh_algorithm: Annotated[str, typer.Option(
        "--surface-mesh-algorithm", help="gmsh surface algorithm: meshadapt, "
        "frontal-delaunay, delaunay.")] = "meshadapt",
    no_netgen: Annotated[bool, typer.Option(
        "--no-netgen", help="Skip gmsh's Netgen optimisation of the tetrahedra.")] = False,
    inlet_offset: Annotated[float, typer.Option(
        "--inlet-offset", help="Distance of the inlet plane below the annulus, mm.")] = 12.0,
    blood_threshold: BloodThresholdOpt = None,
    blood_search_range: BloodSearchOpt = None,
    calcium_threshold: CalciumThresholdOpt = None,
    neck_ratio: NeckRatioOpt = None,
    left_heart_only: LeftHeartOnlyOpt = False,
    segmenter: SegmenterOpt = None,
    resample: Annotated[bool, typer.Option(
        "--resample", help="Regrid a gantry-tilted or unevenly spaced series onto a regular "
        "grid (such series are refused without it).")] = False,
    phase: PhaseOpt = None,
    volume: VolumeOpt = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="Your own segmentation (NIfTI, NRRD or DICOM SEG, e.g. from "
        "TotalSegmentator or 3D Slicer) instead of the built-in one; needs --label-map.")] = None,
    surface: Annotated[Path | None, typer.Option(
        "--surface", help="Your own lumen surface (STL, PLY, OBJ or VTP from vmtk, SimVascular "
        "or 3D Slicer) to mesh instead of the one built from the labels; open ends or flat caps; "
        "flow extensions are added.")] = None,
    surface_convention: Annotated[str, typer.Option(
        "--surface-convention", help="Coordinates of --surface: LPS (DICOM), RAS (most NIfTI "
        "tools, Slicer) or auto (from its overlap with the scan).")] = "auto",
    landmarks: Annotated[Path | None, typer.Option(
        "--landmarks", help="Annulus hinge points (and coronary ostia) from a planning tool: "
        "JSON {\"coordinates\": \"LPS\"|\"RAS\", \"annulus_hinge_points_mm\": [[x,y,z]×3], "
        "\"coronary_ostia_mm\": {...}} or a 3D Slicer markups file; they set the annulus "
        "plane.")] = None,
    label_map: Annotated[str | None, typer.Option(
        "--label-map", help="Which values of --labels are which structure: "
        "'aorta=52,lv_blood=3' (lv_blood and aorta needed; branches, calcium, myocardium "
        "optional; join several values with +).")] = None,
) -> None:
    """Build a twin from a DICOM series: segmentation, landmarks, mesh and baseline flow.

    \b
    Examples:
      cardiotwin twin build out/ph/dicom --hr 72 --sv 65 --sbp 135 --dbp 70
      cardiotwin twin build /media/export --series largest-contrast-ct --no-flow
      cardiotwin twin build ct/ --labels seg.nii.gz --label-map aorta=52,lv_blood=3
      cardiotwin twin build /media/ct-two-acquisitions --volume acquisition=2
    """
    from cardiotwin import workflows

    with errors():
        st = store_at(store)
        with progress("twin") as prog, dicom_hints("build"):
            twin = workflows.build_twin(
                dicom_dir, store=st, actor=actor_for(role),
                physiology=_physiology(heart_rate, stroke_volume, systolic, diastolic),
                settings=workflows.BuildSettings(h_max_mm=h_max, h_min_mm=h_min,
                                                 run_baseline=not no_flow,
                                                 mesh_timeout_s=mesh_timeout,
                                                 mesh_algorithm=mesh_algorithm,
                                                 surface_mesh_algorithm=surface_mesh_algorithm,
                                                 optimize_netgen=not no_netgen,
                                                 inlet_offset_mm=inlet_offset,
                                                 blood_threshold_hu=blood_threshold,
                                                 calcium_threshold_hu=calcium_threshold,
                                                 neck_ratio=neck_ratio,
                                                 segmenters=tuple(segmenter or ()),
                                                 blood_search_range_hu=blood_search_range,
                                                 heart_structures=not left_heart_only),
                progress=prog, series=series, resample=resample, phase=phase, volume=volume,
                labels=labels,
                label_map=label_map, landmarks=landmarks, surface=surface,
                surface_convention=surface_convention)
        print_anatomy(twin.landmarks, None, twin.mesh)
        print_gate(twin.quality_gate)
        console.print(f"twin [bold]{twin.pseudonym}[/] version {twin.version} stored in {st.root}")


@twin_app.command("list")
def twin_list(store: StoreOpt = None, role: RoleOpt = "clinician") -> None:
    """List the pseudonymised patients in the store."""
    from cardiotwin import workflows

    with errors():
        rows = workflows.list_patients(store=store_at(store), actor=actor_for(role))
        t = Table(title="Patients")
        for c in ("pseudonym", "latest_version", "created_utc"):
            t.add_column(c)
        for r in rows:
            t.add_row(r.pseudonym, str(r.latest_version), r.created_utc)
        console.print(t)


@twin_app.command("show")
def twin_show(
    pseudonym: str,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Show what the twin said at this time (ISO 8601 with a UTC offset, "
        "e.g. 2024-05-01T10:42:00+02:00): the version in force then and its data age.")] = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Show a twin: version, anatomy, physiology with ± spread, data age, stale and drift flags.

    \b
    Examples:
      cardiotwin twin show TW-3F2A
      cardiotwin twin show TW-3F2A --as-of 2024-05-01T10:42:00+02:00
    """
    from datetime import datetime

    from cardiotwin import workflows
    from cardiotwin.errors import InputError
    from cardiotwin.study import FlowSummary

    with errors():
        when = None
        if as_of is not None:
            try:
                when = datetime.fromisoformat(as_of)
            except ValueError:
                raise InputError(f"--as-of {as_of!r} is not an ISO 8601 time; expected e.g. "
                                 "2024-05-01T10:42:00+02:00") from None
            if when.tzinfo is None:
                raise InputError(f"--as-of {as_of!r} has no UTC offset, so the instant is "
                                 "ambiguous; add one, e.g. 2024-05-01T10:42:00+02:00")
        status = workflows.twin_status(pseudonym, store=store_at(store), actor=actor_for(role),
                                       as_of=when)
        twin = status.twin
        console.print(f"[bold]{status.pseudonym}[/] version {status.version} (saved "
                      f"{status.saved_utc}: {status.reason})", highlight=False)
        if as_of is not None:
            console.print(f"as of {status.as_of_utc}", highlight=False)
        if twin is not None and twin.anatomy.get("landmarks"):
            print_anatomy(twin.landmarks, None, twin.mesh)
            print_gate(twin.quality_gate)
        print_estimate(status)
        baseline = FlowSummary.baseline_of(twin) if twin is not None else None
        if baseline is not None and baseline.peak_gradient_mmhg is not None:
            console.print(f"result {baseline.label}: peak gradient "
                          f"{baseline.peak_gradient_mmhg:.1f} mmHg")
