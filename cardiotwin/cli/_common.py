"""What the commands of the ``cardiotwin`` CLI share: option types, consoles and helpers.

The option types (``StoreOpt``, ``RoleOpt``, the segmentation overrides...) keep one wording
of each option across commands; the helpers open the store, name the acting user, turn errors
into messages with exit code 1, show progress and print the tables several commands print.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cardiotwin.errors import CardiotwinError

console = Console()
err_console = Console(stderr=True)

# Overrides of the segmentation that its error messages name (twin build, segment).
BloodThresholdOpt = Annotated[float | None, typer.Option(
    "--blood-threshold", help="Contrast blood-pool threshold in HU (default: found from the "
    "scan's descending aorta).")]
CalciumThresholdOpt = Annotated[float | None, typer.Option(
    "--calcium-threshold", help="Calcium threshold in HU (default: above the blood pool from "
    "the scan).")]
SegmenterOpt = Annotated[list[str] | None, typer.Option(
    "--segmenter", help="An installed segmentation plug-in (a deep model whose weights are on "
    "disk) for the structures it provides: NAME or NAME:aorta+myocardium; repeatable. "
    "'cardiotwin segment --list-segmenters' shows what is installed.")]
NeckRatioOpt = Annotated[float | None, typer.Option(
    "--neck-ratio", help="How narrow the LV/aorta neck must be to split them there "
    "(SegmentationSettings.neck_ratio; lower it when the split fails).")]

LeftHeartOnlyOpt = Annotated[bool, typer.Option(
    "--left-heart-only", help="Segment only what the twin's flow needs (LV blood pool, aorta, "
    "calcium) and skip the myocardium, left atrium, right heart and SVC (a few seconds less on "
    "a 1 mm CT).")]

# What to read from a series (twin build, segment; dicom convert has its own wording).
SeriesOpt = Annotated[str | None, typer.Option(
    "--series", help="SeriesInstanceUID or rule, as for 'twin build'.")]
ResampleOpt = Annotated[bool, typer.Option(
    "--resample", help="Regrid a gantry-tilted or unevenly spaced series.")]
PhaseOpt = Annotated[float | None, typer.Option(
    "--phase", help="For a multi-phase (4-D) series: the phase to read, by its label (trigger "
    "time in ms, else temporal position; the error message lists them). A rule such as "
    "--series phase=75 picks by % of the R-R interval instead.")]
VolumeOpt = Annotated[str | None, typer.Option(
    "--volume", help="For a multi-volume series (the same slice positions repeated with "
    "another acquisition, echo, diffusion b-value or temporal position; 'cardiotwin dicom "
    "scan' lists them): the volume to read, by 0-based index or selector such as "
    "acquisition=2, echo=1, b=0 or t=5.")]
BloodSearchOpt = Annotated[tuple[float, float] | None, typer.Option(
    "--blood-search-range", help="HU window searched for the contrast blood pool, LOW HIGH "
    "(SegmentationSettings.blood_search_range_hu; widen it for weak or very strong "
    "contrast).")]

StoreOpt = Annotated[Path | None, typer.Option(
    "--store", help="Store folder (database, artifacts, runs). Default: $CARDIOTWIN_HOME or "
    "./cardiotwin-data.")]
RoleOpt = Annotated[str, typer.Option(
    "--role", help="Role you act in (clinician, researcher, device_engineer, privacy_officer, admin).")]


def fail(exc: CardiotwinError) -> None:
    """Print ``exc`` on stderr and exit with code 1."""
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=1)


@contextmanager
def errors() -> Iterator[None]:
    """Turn a :class:`~cardiotwin.errors.CardiotwinError` into a message and exit code 1."""
    try:
        yield
    except CardiotwinError as exc:
        fail(exc)


def store_at(path: Path | None):
    """The store at ``--store``, else ``$CARDIOTWIN_HOME``, else ``./cardiotwin-data``."""
    from cardiotwin import workflows

    root = path or Path(os.environ.get("CARDIOTWIN_HOME", "cardiotwin-data"))
    return workflows.open_store(root)


def actor_for(role: str):
    """The user at the terminal (``$CARDIOTWIN_USER``, else the login name) acting in ``role``."""
    from cardiotwin.store import Actor

    user = os.environ.get("CARDIOTWIN_USER") or getpass.getuser()
    return Actor(username=user, role=role, client="cli")


@contextmanager
def progress(description: str) -> Iterator[Callable[[float, str], None]]:
    """A progress bar; yields ``update(fraction, message)`` for the workflows' ``progress=``."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[msg]}"), TimeElapsedColumn(), console=console,
                  transient=False) as prog:
        task = prog.add_task(description, total=1.0, msg="")

        def update(frac: float, msg: str) -> None:
            prog.update(task, completed=max(0.0, min(1.0, frac)), msg=msg)

        yield update


@contextmanager
def dicom_hints(command: str) -> Iterator[None]:
    """Re-raise a DICOM reader's refusal with the options of ``command`` (``convert``,
    ``build``, ``segment``) that resolve it: the reader names its API arguments
    (``resample=True``, ``series_uid=...``, ``phase=<label>``...), the user needs the flags."""
    from cardiotwin.errors import DicomError

    try:
        yield
    except DicomError as exc:
        msg = str(exc)
        hints = []
        if "resample=True" in msg:
            hints.append("--resample")
        if "series_uid" in msg or "uid=..." in msg:
            hints.append("--series UID or --select RULE (list them: cardiotwin dicom scan)"
                         if command == "convert" else
                         "--series UID or --series RULE (list them: cardiotwin dicom scan)")
        if "phase=<label>" in msg:
            hints.append("--phase LABEL")
        if "min_slices=1" in msg:
            hints.append("--min-slices 1" if command == "convert" else
                         "a twin needs a 3-D series; 'cardiotwin dicom convert --min-slices 1' "
                         "converts a single image")
        if "read_series([" in msg:
            hints.append("give one mosaic file as IN (one volume per file)" if command == "convert"
                         else "convert one mosaic file with 'cardiotwin dicom convert'")
        if hints:
            raise DicomError(f"{msg}. On the command line: {'; '.join(hints)}") from None
        raise


def print_comparison(reh, *, title: str) -> None:
    """The before/after table of a rehearsal."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("before (native)", justify="right")
    table.add_column("after (device)", justify="right")
    table.add_column("unit")
    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    for row in reh.rows():
        table.add_row(row.metric, fmt(row.before), fmt(row.after), row.unit)
    console.print(table)


def print_gate(gate) -> None:
    """The anatomy quality gate of a twin: its status and every warning."""
    if gate is None:
        return
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}[gate.status]
    console.print(f"anatomy quality gate: [{colour}]{gate.status}[/] ({len(gate.checks)} checks)")
    for c in gate.warnings:
        console.print(f"[yellow]warning:[/] {c.name}: {c.message}")


def print_anatomy(lms, truth=None, mesh: dict | None = None) -> None:
    """The aortic-root measurements (``AorticRootLandmarks``), beside the phantom's truth."""
    t = Table(title="Aortic root (mm, mm²)")
    t.add_column("measurement")
    t.add_column("cardiotwin", justify="right")
    if truth:
        t.add_column("phantom truth", justify="right")
    for k in ("annulus_diameter_mm", "annulus_perimeter_diameter_mm", "annulus_area_mm2",
              "lvot_diameter_mm", "sinus_diameter_mm", "valve_orifice_area_mm2"):
        row = [k, f"{getattr(lms, k):.1f}"]
        if truth:
            row.append(f"{getattr(truth, k):.1f}")
        t.add_row(*row)
    console.print(t)
    if mesh:
        console.print(f"mesh: {mesh.get('n_cells')} tetrahedra, {mesh.get('n_vertices')} vertices, "
                      f"outlets: {', '.join(c['name'] for c in mesh['caps'] if c['name'] != 'inlet')}")


_ESTIMATE_LABELS = {
    "heart_rate": "heart rate", "stroke_volume": "stroke volume",
    "cardiac_output": "cardiac output", "systolic_bp": "systolic pressure",
    "diastolic_bp": "diastolic pressure", "mean_bp": "mean arterial pressure",
    "resistance": "total resistance", "compliance": "total compliance", "rd_c": "Rd·C",
    "valve_gradient": "valve gradient (mean systolic flow)",
}
_BUILD_VALUES = {"heart_rate": "heart_rate_bpm", "stroke_volume": "stroke_volume_ml",
                 "systolic_bp": "systolic_bp_mmhg", "diastolic_bp": "diastolic_bp_mmhg"}


def format_age(seconds: float | None) -> str:
    """A data age in s, min, h or d (``seconds`` in s; None: no data)."""
    if seconds is None:
        return "no data"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def print_estimate(status) -> None:
    """Physiology with ± one SD beside the build values; data age; stale and drift flags."""
    est = status.estimate
    t = Table(title=f"Physiology as of {status.as_of_utc} ({est.n_observations} observations "
                    "assimilated)")
    t.add_column("quantity")
    t.add_column("twin now", justify="right")
    t.add_column("± 1 SD", justify="right")
    t.add_column("at last 3-D run", justify="right")
    t.add_column("unit")
    phys = status.physiology.to_dict()
    ref = {"mean_bp": est.reference.map_mmhg, "valve_gradient": est.reference.gradient_mmhg}
    for name, e in est.estimates.items():
        built = phys.get(_BUILD_VALUES.get(name, ""), ref.get(name))
        t.add_row(_ESTIMATE_LABELS.get(name, name), f"{e.mean:.2f}", f"{e.sd:.2f}",
                  "–" if built is None else f"{built:.2f}", e.unit)
    console.print(t)
    console.print(f"data age: {format_age(est.data_age_s)} (last observation "
                  f"{est.last_observation_utc or 'none'})", highlight=False)
    if est.stale:
        console.print(f"[bold yellow]STALE[/]: {est.stale_reason}; the spread above has grown "
                      "with the data age", highlight=False)
    else:
        console.print("[green]current[/]: data age within the stale limit")
    if est.drift:
        console.print("[bold red]DRIFT[/]: run a new 3-D simulation (twin build / rehearse) — "
                      + "; ".join(est.drift_reasons), highlight=False)
    else:
        console.print("no drift since the last 3-D run")

