"""The ``cardiotwin`` command line.

Start with ``cardiotwin demo``: it builds the twin of the embedded phantom patient from DICOM,
rehearses a transcatheter valve on it and writes a report. Every command that touches patient data
is audited in the store (``--store``, default ``./cardiotwin-data`` or ``$CARDIOTWIN_HOME``).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cardiotwin import __version__
from cardiotwin.errors import CardiotwinError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    help=(
        "cardiotwin — patient-specific cardiac digital twins.\n\n"
        "From a contrast CT (DICOM) it segments the left ventricle and aorta, measures the aortic "
        "root, meshes the blood volume, and simulates blood flow (FEniCSx) before and after a "
        "transcatheter valve. Every access to patient data is audited.\n\n"
        "First steps:\n\n"
        "\b\n"
        "  cardiotwin demo                       whole pipeline on the built-in phantom\n"
        "  cardiotwin phantom write out/ph       the phantom as a DICOM series\n"
        "  cardiotwin twin build out/ph/dicom    a twin from a contrast CT series\n"
        "  cardiotwin measure out/ph/dicom       annulus, root, aorta, ostia, calcium (± mm)\n"
        "  cardiotwin twin list                  pseudonymised patients in the store\n"
        "  cardiotwin device size <pseudonym>    oversizing of every valve size\n"
        "  cardiotwin rehearse <pseudonym> --size 26  place a valve, simulate, compare\n"
        "  cardiotwin audit verify               prove the audit log was not altered\n\n"
        "Units: geometry in mm (DICOM LPS), pressures in mmHg, flows in L/min at the edges; SI "
        "inside the solver."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
twin_app = typer.Typer(help="Build, list and inspect patient twins.", no_args_is_help=True)
device_app = typer.Typer(help="The device catalog and sizing.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
phantom_app = typer.Typer(help="The synthetic CT phantom (the embedded demo patient).",
                          no_args_is_help=True)
users_app = typer.Typer(help="Users of the app and their roles.", no_args_is_help=True)
dicom_app = typer.Typer(help="DICOM folders.", no_args_is_help=True)
app.add_typer(twin_app, name="twin")
app.add_typer(device_app, name="device")
app.add_typer(audit_app, name="audit")
app.add_typer(phantom_app, name="phantom")
app.add_typer(users_app, name="users")
app.add_typer(dicom_app, name="dicom")

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


def _version(value: bool) -> None:
    if value:
        console.print(f"cardiotwin {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the console stays at this level even when a
        handler.setLevel(level)                   # log file (demo) takes INFO records


def _fail(exc: CardiotwinError) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=1)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except CardiotwinError as exc:
        _fail(exc)


def _store(path: Path | None):
    from cardiotwin.workflows import open_store

    root = path or Path(os.environ.get("CARDIOTWIN_HOME", "cardiotwin-data"))
    return open_store(root)


def _actor(role: str):
    from cardiotwin.store import Actor

    user = os.environ.get("CARDIOTWIN_USER") or getpass.getuser()
    return Actor(username=user, role=role, client="cli")


@contextmanager
def _progress(description: str) -> Iterator[Callable[[float, str], None]]:
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[msg]}"), TimeElapsedColumn(), console=console,
                  transient=False) as prog:
        task = prog.add_task(description, total=1.0, msg="")

        def update(frac: float, msg: str) -> None:
            prog.update(task, completed=max(0.0, min(1.0, frac)), msg=msg)

        yield update


def _physiology(hr: float, sv: float, sbp: float, dbp: float):
    from cardiotwin.twin.state import Physiology

    return Physiology(heart_rate_bpm=hr, stroke_volume_ml=sv, systolic_bp_mmhg=sbp,
                      diastolic_bp_mmhg=dbp)


def _print_comparison(reh, *, title: str) -> None:
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


# ----------------------------------------------------------------------------------------- demo
LIVE_SECONDS = 20.0
"""Length of the bedside record the demo replays into the twin, s."""
LIVE_TIMEOUT_S = 30.0
"""Bound of the demo's live step (broker start, replay, every message applied), s."""

@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder (DICOM, store, results, report).")] = Path("out/demo"),
    seed: Annotated[int, typer.Option(help="Phantom random seed (noise, calcium).")] = 0,
    spacing: Annotated[float, typer.Option(help="Phantom voxel size in mm.")] = 1.0,
    size: Annotated[float | None, typer.Option(help="Valve size in mm (default: recommended).")] = None,
    depth: Annotated[float | None, typer.Option(help="Implantation depth below the annulus, mm.")] = None,
    h_max: Annotated[float, typer.Option(help="Mesh size away from the valve, mm.")] = 3.0,
    h_min: Annotated[float, typer.Option(help="Mesh size near the valve, mm.")] = 1.2,
) -> None:
    """Run the whole pipeline on the built-in phantom patient.

    Phantom CT → DICOM series → twin (segmentation, landmarks, mesh, baseline flow through the
    stenotic valve) → balloon-expandable valve placed at the annulus → flow after the device →
    summary table and HTML report with plots; VTU/XDMF files for ParaView. After the rehearsal
    a short bedside record is replayed over MQTT (embedded broker) into the twin, which shows
    its new version, estimate with ± spread, data age and flags.
    """
    from cardiotwin import workflows
    from cardiotwin.report import write_report

    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    with _errors():
        out.mkdir(parents=True, exist_ok=True)
        logging.getLogger().addHandler(_file_handler(out / "cardiotwin.log"))
        t0 = time.perf_counter()
        console.print(f"[bold]1/5[/] phantom CT (seed {seed}, {spacing:g} mm) → DICOM")
        study = workflows.write_phantom(out, seed=seed, spacing_mm=spacing, write_labels=False)
        ph, dicom_dir = study.phantom, study.dicom_dir
        timings["phantom + DICOM write"] = time.perf_counter() - t0
        store = _store(out / "store")
        actor = _actor("clinician")
        console.print("[bold]2/5[/] building the twin from DICOM")
        t0 = time.perf_counter()
        with _progress("twin") as prog:
            twin = workflows.build_twin(
                dicom_dir, store=store, actor=actor,
                settings=workflows.BuildSettings(h_max_mm=h_max, h_min_mm=h_min), progress=prog)
        timings["build twin (incl. baseline flow)"] = time.perf_counter() - t0
        for k, v in twin.provenance.get("timings_s", {}).items():
            timings[f"  {k}"] = v
        console.print(f"[bold]3/5[/] rehearsing the valve on twin {twin.pseudonym}")
        t0 = time.perf_counter()
        with _progress("rehearsal") as prog:
            reh = workflows.rehearse(twin.pseudonym, store=store, actor=actor,
                                     nominal_diameter_mm=size, depth_mm=depth, progress=prog)
        timings["rehearsal (device flow)"] = time.perf_counter() - t0
        console.print(f"[bold]4/5[/] live update: a {LIVE_SECONDS:g} s bedside record (ECG + "
                      "arterial pressure) replayed over MQTT (embedded broker) into the twin")
        live = workflows.live_update(twin.pseudonym, store=store, actor=actor,
                                     folder=out / "monitoring", seconds=LIVE_SECONDS,
                                     timeout_s=LIVE_TIMEOUT_S)
        timings["live update (MQTT replay)"] = live.seconds
        console.print(f"{live.published} observations published to {live.broker}, "
                      f"{live.received} received; twin {twin.pseudonym} version "
                      f"{live.versions_before} → {live.version_after} ({live.ingests} updates)",
                      highlight=False)
        _print_estimate(live.status)
        console.print("[bold]5/5[/] report")
        truth = ph.truth.landmarks
        _print_anatomy(twin.landmarks, truth, twin.mesh)
        _print_gate(twin.quality_gate)
        _print_comparison(reh, title=f"{twin.pseudonym}: native stenotic valve vs "
                                     f"{reh.nominal_diameter_mm:g} mm balloon-expandable valve")
        timings["total"] = time.perf_counter() - t_all
        report = write_report(out / "report.html", twin=twin, rehearsal=reh, truth=truth,
                              timings_s=timings)
        tt = Table(title="Times (s)")
        tt.add_column("stage")
        tt.add_column("s", justify="right")
        for k, v in timings.items():
            tt.add_row(k, f"{v:.1f}")
        console.print(tt)
        console.print(f"report: [bold]{report}[/]")
        for k, v in reh.files.items():
            console.print(f"  {k}: {v}")
        console.print(f"audit chain: {store.verify_audit().reason}")


def _file_handler(path: Path) -> logging.Handler:
    h = logging.FileHandler(path)
    h.setLevel(logging.INFO)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().setLevel(logging.INFO)
    for name in ("cardiotwin",):
        logging.getLogger(name).setLevel(logging.INFO)
    return h


def _print_gate(gate) -> None:
    """The anatomy quality gate of a twin: its status and every warning."""
    if gate is None:
        return
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}[gate.status]
    console.print(f"anatomy quality gate: [{colour}]{gate.status}[/] ({len(gate.checks)} checks)")
    for c in gate.warnings:
        console.print(f"[yellow]warning:[/] {c.name}: {c.message}")


def _print_anatomy(lms, truth=None, mesh: dict | None = None) -> None:
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


# ----------------------------------------------------------------------------------------- phantom
@phantom_app.command("write")
def phantom_write(
    out: Annotated[Path, typer.Argument(help="Folder to write (dicom/ and labels.nii.gz inside).")],
    seed: Annotated[int, typer.Option(help="Random seed (noise, calcium).")] = 0,
    spacing: Annotated[float, typer.Option(help="Voxel size in mm.")] = 1.0,
    annulus: Annotated[float, typer.Option(help="Annulus diameter in mm.")] = 23.0,
    orifice: Annotated[float, typer.Option(help="Stenotic valve orifice area in mm².")] = 80.0,
) -> None:
    """Write the parametric contrast-CT phantom as a DICOM series plus its ground-truth labels."""
    from cardiotwin import workflows

    with _errors():
        ph = workflows.write_phantom(out, seed=seed, spacing_mm=spacing,
                                     annulus_diameter_mm=annulus, valve_orifice_area_mm2=orifice)
        names = ph.phantom.labels.names
        console.print(f"wrote {len(ph.files)} DICOM slices to {ph.dicom_dir} and labels.nii.gz "
                      f"({', '.join(f'{k}={v}' for k, v in names.items())})")


# ----------------------------------------------------------------------------------------- dicom
_SCAN_COLS = ("#", "patient", "series_uid", "modality", "description", "type", "size",
              "spacing_mm", "contrast", "phases", "kernel")


@dicom_app.command("scan")
def dicom_scan(
    path: Annotated[Path, typer.Argument(help="Folder to scan recursively (DICOMDIR is followed).")],
    select: Annotated[str | None, typer.Option(
        "--select", help="Report the series a rule picks: largest-contrast-ct, largest-ct, "
        "phase=75, trigger=350 or uid-prefix=1.2.3.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalog as JSON.")] = False,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """List patients (pseudonymised), studies and series under a folder; reads headers only.

    Patients appear under the store's keyed pseudonyms (the ones their twins get); the scan is
    audited in the store (counts and pseudonyms, never names or paths). A multi-frame cine is
    shown as frames over time; a multi-volume series (diffusion b-values, echoes, repeated
    acquisitions at the same positions) as its volumes, each with the --volume option that reads
    it in dicom convert, twin build and segment.

    \b
    Examples:
      cardiotwin dicom scan /media/pacs-export
      cardiotwin dicom scan /media/pacs-export --select largest-contrast-ct
      cardiotwin dicom scan /media/cine --select phase=75 --json
    """
    from cardiotwin.workflows import scan_dicom

    with _errors():
        st, actor = _store(store), _actor(role)
        if as_json:
            catalog, sel = scan_dicom(path, store=st, actor=actor, rule=select)
        else:
            with _progress("scan") as prog:
                catalog, sel = scan_dicom(path, store=st, actor=actor, rule=select, progress=prog)
        if as_json:
            out = catalog.to_dict()
            if sel is not None:
                out["selection"] = {"series_uid": sel.series_uid, "reason": sel.reason,
                                    "files": [str(f) for f in sel.files]}
            typer.echo(json.dumps(out, indent=2))
            return
        table = Table(title=f"DICOM series in {path} ({catalog.n_files} files)")
        rows = catalog.to_rows()
        cols = _SCAN_COLS
        if any(row.get("volumes") for row in rows):  # a multi-volume series: say how many
            cols = (*_SCAN_COLS[:10], "volumes", *_SCAN_COLS[10:])
        for col in cols:
            table.add_column(col, overflow="fold")
        for i, row in enumerate(rows, 1):
            uid = str(row["series_uid"])
            shown = {**row, "#": str(i), "series_uid": uid if len(uid) <= 20 else "…" + uid[-19:]}
            table.add_row(*(str(shown[c]) for c in cols))
        console.print(table)
        for i, (row, se) in enumerate(zip(rows, catalog.series, strict=True), 1):
            if row.get("problems"):
                console.print(f"[yellow]series {i}:[/] {row['problems']}", highlight=False)
            if se.volumes:
                console.print(f"series {i} holds {len(se.volumes)} volumes at the same slice "
                              "positions; pick one with --volume INDEX or --volume SELECTOR "
                              "(dicom convert, twin build, segment):", highlight=False)
                for v in se.volumes:
                    console.print(f"  --volume {v.index:<3} or --volume {v.label:<24} "
                                  f"{v.n_slices} slices{', ' + v.details if v.details else ''}",
                                  highlight=False)
        for line in catalog.problems:
            console.print(f"[yellow]problem:[/] {line}", highlight=False)
        if catalog.skipped:
            console.print(f"[yellow]skipped:[/] {catalog.skipped_text()} (--json lists every "
                          "file with the reason)", highlight=False)
        if sel is not None:
            console.print(f"[bold]selected[/] {sel.series_uid}: {sel.reason}", highlight=False)


@dicom_app.command("deid")
def dicom_deid(
    in_dir: Annotated[Path, typer.Argument(help="Folder of DICOM files (recursive); only read.")],
    out_dir: Annotated[Path, typer.Argument(help="Output folder, outside IN_DIR.")],
    key_file: Annotated[Path | None, typer.Option(
        "--key-file", help="Pseudonym key file (hex or raw). Default: the store's key, so the "
        "pseudonyms match the twins.")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", envvar="CARDIOTWIN_DEID_KEY",
        help="Pseudonym key as hex (>= 32 hex digits).")] = None,
    retain_dates: Annotated[bool, typer.Option(
        "--shift-dates", "--retain-dates",
        help="Retain Longitudinal Temporal Information with Modified Dates: shift every date "
        "by a keyed per-patient number of days (intervals are kept).")] = False,
    clean_descriptors: Annotated[bool, typer.Option(
        "--clean-descriptors", help="Keep descriptions, cleaned of identifiers.")] = False,
    record: Annotated[Path | None, typer.Option(
        "--record", help="JSON-lines record of what was done per file. Default: "
        "OUT_DIR/deid-record.jsonl.")] = None,
    accept_unknown_burned_in: Annotated[bool, typer.Option(
        "--accept-unknown-burned-in", help="De-identify burn-in-prone images (US, secondary "
        "capture, photographs) whose BurnedInAnnotation is absent, after you have checked "
        "their pixels carry no names or dates.")] = False,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """De-identify DICOM files (PS3.15 Annex E Basic profile) into OUT_DIR, with a record.

    UIDs are remapped consistently (same key → same UIDs), the patient becomes a keyed
    pseudonym, private tags are removed and files flagged with burned-in annotation are refused.
    The run is audited in the store. See docs/deid.md.

    \b
    Examples:
      cardiotwin dicom deid /media/export out/deid
      cardiotwin dicom deid /media/export out/deid --shift-dates --clean-descriptors
    """
    from cardiotwin.errors import InputError
    from cardiotwin.workflows import deidentify_dicom

    with _errors():
        k: bytes | Path | None = None
        if key_file is not None:
            k = key_file
        elif key:
            try:
                k = bytes.fromhex(key.strip())
            except ValueError:
                raise InputError("--key / CARDIOTWIN_DEID_KEY must be hexadecimal") from None
        rep = deidentify_dicom(in_dir, out_dir, store=_store(store), actor=_actor(role),
                               retain_dates=retain_dates, clean_descriptors=clean_descriptors,
                               record_path=record, key=k,
                               refuse_unknown_burned_in=not accept_unknown_burned_in)
        console.print(f"de-identified {len(rep.files)} files into {rep.out_dir} "
                      f"({len(rep.skipped)} skipped) in {rep.elapsed_s:.1f} s; "
                      f"record {rep.record_path}", highlight=False)



_CONVERT_SUFFIXES = (".nii", ".nii.gz", ".nrrd")


@contextmanager
def _dicom_hints(command: str) -> Iterator[None]:
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


def _fmt(values, digits: int = 4) -> str:
    return "(" + ", ".join(f"{float(v):.{digits}f}" for v in values) + ")"


@dicom_app.command("convert")
def dicom_convert(
    in_path: Annotated[Path, typer.Argument(
        metavar="IN", help="DICOM folder (searched recursively) or a single DICOM file.")],
    out: Annotated[Path, typer.Argument(
        metavar="OUT", help="Output file: .nii, .nii.gz (NIfTI-1) or .nrrd, chosen by the extension.")],
    select: Annotated[str | None, typer.Option(
        "--select", help="When IN holds several series: pick one by rule (largest-contrast-ct, "
        "largest-ct, phase=75, trigger=350, uid-prefix=1.2.3; see 'cardiotwin dicom scan').")]
    = None,
    series: Annotated[str | None, typer.Option(
        "--series", help="When IN holds several series: the SeriesInstanceUID to convert.")]
    = None,
    resample: Annotated[bool, typer.Option(
        "--resample", help="Resample a gantry-tilted, unevenly spaced or gapped series onto a "
        "regular orthogonal grid (linear interpolation) instead of refusing it.")] = False,
    phase: Annotated[float | None, typer.Option(
        "--phase", help="For a multi-phase (4-D) series: the phase label to convert (trigger "
        "time in ms, else temporal position; the error message lists them).")] = None,
    volume: Annotated[str | None, typer.Option(
        "--volume", help="For a multi-volume series (the same slice positions repeated with "
        "another diffusion b-value, echo, acquisition or temporal position): the volume to "
        "convert, by 0-based index or selector such as b=1000, echo=2, acquisition=3 or t=5 "
        "(the error message lists them).")] = None,
    min_slices: Annotated[int, typer.Option(
        "--min-slices", min=1, help="Fewest slices accepted; 1 converts a single 2-D image "
        "(slice thickness from SpacingBetweenSlices, else SliceThickness, else 1 mm).")] = 2,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Convert one DICOM series to a NIfTI or NRRD volume (like dcm2niix), printing its geometry.

    The geometry is the reader's: voxel centres in patient space exactly as the DICOM places
    them (Siemens mosaics split into slices, as dcm2niix does). NIfTI stores it as sform = qform
    (code 1, scanner, RAS mm); NRRD as space left-posterior-superior, space directions and
    origin. Values are float32 after RescaleSlope/Intercept (HU for CT).

    No patient identity is written: the NIfTI header holds only the geometry, units (mm) and
    the description 'cardiotwin <modality> volume'; the NRRD header only the geometry and
    encoding. No JSON sidecar is written (names, IDs, dates and UIDs stay in the DICOM).

    A series the reader refuses (gantry tilt, uneven or missing slices, several phases or
    several series) fails with exit code 1 and a message saying which option resolves it.

    \b
    Examples:
      cardiotwin dicom convert /media/ct-export ct.nii.gz
      cardiotwin dicom convert /media/pacs-export ct.nrrd --select largest-contrast-ct
      cardiotwin dicom convert /media/pacs-export ct.nii --series 1.2.840.113619.2.55.3.1
      cardiotwin dicom convert /media/head-ct-tilted head.nii.gz --resample
      cardiotwin dicom convert /media/cardiac-4d phase.nii.gz --phase 350
      cardiotwin dicom convert /media/cine ph75.nii.gz --select phase=75
      cardiotwin dicom convert /media/dwi b1000.nii.gz --volume b=1000
      cardiotwin dicom convert fmri/0001.dcm vol.nii.gz     (one Siemens mosaic file)
    """
    from cardiotwin.errors import InputError
    from cardiotwin.workflows import convert_dicom

    with _errors():
        name = out.name.lower()
        if not name.endswith(_CONVERT_SUFFIXES):
            raise InputError(f"OUT must end with .nii, .nii.gz or .nrrd; got {out.name!r}")
        if out.exists() and not force:
            raise InputError(f"{out} exists; pass --force to replace it")
        if select is not None and series is not None:
            raise InputError("give either --select or --series, not both")
        with _dicom_hints("convert"):
            vol, written, picked = convert_dicom(
                in_path, out, store=_store(store), actor=_actor(role), rule=select,
                series_uid=series, resample=resample, phase=phase, volume=volume,
                min_slices=min_slices)
        if name.endswith(".nrrd"):
            header = "NRRD header: space LPS, space directions, space origin, encoding gzip"
        else:
            header = ("NIfTI header: sform = qform (code 1, RAS mm), units mm, descrip "
                      f"'cardiotwin {vol.metadata.get('modality', '')} volume'")
        md = vol.metadata
        nk, nj, ni = vol.shape
        lines = [
            f"wrote {written}",
            f"  series      {md.get('description') or '-'} ({md.get('modality') or '?'}, "
            f"{md.get('n_frames')} image(s) from {len(md.get('files', []))} file(s))",
        ]
        if md.get("pseudonym"):
            lines.append(f"  patient     {md['pseudonym']} (the store's pseudonym)")
        if picked:
            lines.append(f"  selected    {picked}")
        if md.get("phase") is not None:
            lines.append(f"  phase       {md['phase']}")
        if md.get("volume") is not None:
            lines.append(f"  volume      {md['volume']}")
        lines += [
            f"  shape       {ni} x {nj} x {nk} (i x j x k: columns, rows, slices)",
            f"  spacing_mm  {_fmt(vol.spacing_mm, 4)}",
            f"  origin_mm   {_fmt(vol.origin_mm, 3)} (LPS, centre of the first voxel)",
            "  axes        " + ", ".join(_fmt(c, 5) for c in vol.direction.T)
            + " (LPS unit vectors of i, j, k)",
        ]
        rs = md.get("resampled")
        if rs:
            lines.append(
                f"  resampled   {rs['reason']}; {rs['original_n_slices']} slices -> {nk} at "
                f"{rs['slice_step_mm']:.4f} mm, {rs['method']}, fill {rs['fill_value']:g}")
        else:
            lines.append("  resampled   no (voxels as stored)")
        lines.append(f"  {header}; no patient name, ID, dates or UIDs")
        for line in lines:
            console.print(line, highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------------------- segment
@app.command()
def segment(
    dicom_dir: Annotated[Path | None, typer.Argument(
        help="Folder with the contrast CT to segment (not needed with --evaluate).")] = None,
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", help="Label file to write: .nii.gz, .nii or .nrrd (a .json sidecar with "
        "the structure names, volumes and how the blood pool was found goes beside it).")] = None,
    series: Annotated[str | None, typer.Option(
        "--series", help="SeriesInstanceUID or rule, as for 'twin build'.")] = None,
    resample: Annotated[bool, typer.Option(
        "--resample", help="Regrid a gantry-tilted or unevenly spaced series.")] = False,
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

    with _errors():
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
        with _dicom_hints("segment"):
            res = workflows.segment_dicom(
                dicom_dir, out, store=_store(store), actor=_actor(role), series=series,
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


# ----------------------------------------------------------------------------------------- measure
@app.command()
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
    series: Annotated[str | None, typer.Option(
        "--series", help="SeriesInstanceUID or rule, as for 'twin build'.")] = None,
    resample: Annotated[bool, typer.Option(
        "--resample", help="Regrid a gantry-tilted or unevenly spaced series.")] = False,
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

    with _errors():
        res = workflows.measure_anatomy(
            dicom_dir, store=_store(store), actor=_actor(role), series=series, resample=resample,
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


# ----------------------------------------------------------------------------------------- twin
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

    with _errors():
        st = _store(store)
        with _progress("twin") as prog, _dicom_hints("build"):
            twin = workflows.build_twin(
                dicom_dir, store=st, actor=_actor(role),
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
        _print_anatomy(twin.landmarks, None, twin.mesh)
        _print_gate(twin.quality_gate)
        console.print(f"twin [bold]{twin.pseudonym}[/] version {twin.version} stored in {st.root}")


@twin_app.command("list")
def twin_list(store: StoreOpt = None, role: RoleOpt = "clinician") -> None:
    """List the pseudonymised patients in the store."""
    from cardiotwin import workflows

    with _errors():
        rows = workflows.list_patients(store=_store(store), actor=_actor(role))
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

    with _errors():
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
        status = workflows.twin_status(pseudonym, store=_store(store), actor=_actor(role),
                                       as_of=when)
        twin = status.twin
        console.print(f"[bold]{status.pseudonym}[/] version {status.version} (saved "
                      f"{status.saved_utc}: {status.reason})", highlight=False)
        if as_of is not None:
            console.print(f"as of {status.as_of_utc}", highlight=False)
        if twin is not None and twin.anatomy.get("landmarks"):
            _print_anatomy(twin.landmarks, None, twin.mesh)
            _print_gate(twin.quality_gate)
        _print_estimate(status)
        baseline = FlowSummary.baseline_of(twin) if twin is not None else None
        if baseline is not None and baseline.peak_gradient_mmhg is not None:
            console.print(f"result {baseline.label}: peak gradient "
                          f"{baseline.peak_gradient_mmhg:.1f} mmHg")


_ESTIMATE_LABELS = {
    "heart_rate": "heart rate", "stroke_volume": "stroke volume",
    "cardiac_output": "cardiac output", "systolic_bp": "systolic pressure",
    "diastolic_bp": "diastolic pressure", "mean_bp": "mean arterial pressure",
    "resistance": "total resistance", "compliance": "total compliance", "rd_c": "Rd·C",
    "valve_gradient": "valve gradient (mean systolic flow)",
}
_BUILD_VALUES = {"heart_rate": "heart_rate_bpm", "stroke_volume": "stroke_volume_ml",
                 "systolic_bp": "systolic_bp_mmhg", "diastolic_bp": "diastolic_bp_mmhg"}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def _print_estimate(status) -> None:
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
    console.print(f"data age: {_age(est.data_age_s)} (last observation "
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


# ----------------------------------------------------------------------------------------- ingest
@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(
        metavar="FILE|DIR", help="A monitoring file (FHIR JSON, HL7 v2, WFDB record, CSV) or a "
        "folder of them.")],
    subject: Annotated[str | None, typer.Option(
        "--subject", help="The twin's pseudonym for records that name no patient (WFDB, CSV "
        "without a subject column).")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="fhir, hl7, wfdb or csv (default: from the extension: .json, "
        ".hl7/.er7/.txt, .hea, .csv).")] = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", help="CSV column map: time=COL[,subject=COL][,device=COL],COL=LOINC:UCUM,"
        "... e.g. time=t,hr=8867-4:/min,sbp=8480-6:mm[Hg],dbp=8462-4:mm[Hg].")] = None,
    timezone: Annotated[str | None, typer.Option(
        "--timezone", help="IANA zone (Europe/Berlin) of times without a UTC offset (HL7 v2 "
        "TS, CSV, WFDB headers).")] = None,
    start: Annotated[str | None, typer.Option(
        "--start", help="Time of the first sample of a WFDB record whose header has none "
        "(ISO 8601 with offset).")] = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Check monitoring data, store it and update the twins it belongs to.

    Each accepted batch updates the twin's physiology (an unscented Kalman filter) as a new
    twin version; refused records go to the quarantine with their reason. Audited.

    \b
    Examples:
      cardiotwin ingest vitals.json
      cardiotwin ingest ward-feed/ --format hl7
      cardiotwin ingest cuff.csv --subject TW-3F2A --columns time=t,sbp=8480-6:mm[Hg]
    """
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from cardiotwin import workflows
    from cardiotwin.errors import InputError

    with _errors():
        tz = start_time = None
        if timezone is not None:
            try:
                tz = ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise InputError(f"--timezone {timezone!r} is not an IANA time zone "
                                 "(e.g. Europe/Berlin, UTC)") from None
        if start is not None:
            try:
                start_time = datetime.fromisoformat(start)
            except ValueError:
                raise InputError(f"--start {start!r} is not an ISO 8601 time (e.g. "
                                 "2024-05-01T10:00:00+00:00)") from None
        results = workflows.ingest_file(path, store=_store(store), actor=_actor(role),
                                        subject=subject, format=fmt, columns=columns,
                                        default_timezone=tz, start_time=start_time)
        if not results:
            console.print(f"no monitoring data for any twin in {path}", highlight=False)
            return
        t = Table(title=f"Ingested {path}")
        for c in ("twin", "accepted", "duplicates", "quarantined", "version", "data age",
                  "flags"):
            t.add_column(c)
        for r in results:
            flags = [f for f, on in (("STALE", r.stale), ("DRIFT", r.drift)) if on]
            t.add_row(r.pseudonym, str(r.accepted), str(r.duplicates), str(len(r.quarantined)),
                      "–" if r.version is None else str(r.version),
                      _age(r.status.data_age_s if r.status else None),
                      " ".join(flags) or "ok")
        console.print(t)
        for r in results:
            for q in r.quarantined[:20]:
                console.print(f"[yellow]quarantined[/] ({q.kind}) {q.reason}", highlight=False)
            if len(r.quarantined) > 20:
                console.print(f"… and {len(r.quarantined) - 20} more for {r.pseudonym}")
            for reason in r.drift_reasons:
                console.print(f"[bold red]DRIFT[/] {r.pseudonym}: {reason}", highlight=False)


# ----------------------------------------------------------------------------------------- rehearse
@app.command()
def rehearse(
    pseudonym: Annotated[str, typer.Argument(help="The twin's pseudonym (see `cardiotwin twin list`).")],
    size: Annotated[float | None, typer.Option(help="Valve size in mm (default: recommended).")] = None,
    depth: Annotated[float | None, typer.Option(help="Implantation depth below the annulus, mm.")] = None,
    tilt: Annotated[float, typer.Option(help="Tilt of the valve axis from the annulus normal, °.")] = 0.0,
    rotation: Annotated[float, typer.Option(help="Azimuth of the tilt around the normal, °.")] = 0.0,
    family: Annotated[str, typer.Option(help="Device family key (see `cardiotwin device list`).")] = "balloon_expandable_thv",
    pulsatile: Annotated[bool, typer.Option(
        "--pulsatile", help="Simulate whole cardiac cycles (pulsatile flow, Windkessel outlets "
        "fitted to the blood pressure) instead of steady flow at mean systolic flow. Gives mean "
        "and peak gradients over the cycle, EOA (Gorlin, continuity), aortic pressures, TAWSS "
        "and OSI. Slow: a cycle at 70 bpm is 1,714 steps of 0.5 ms, over an hour per valve on "
        "the demo twin's mesh (--t-end-ms runs part of it); the native-valve cycle is stored "
        "and reused. An interrupted run (Ctrl-C, closed session) resumes from its last "
        "checkpoint (every 100 ms of simulated time) when the same command is run again.")] = False,
    dt_ms: Annotated[float, typer.Option("--dt-ms", help="Time step of --pulsatile, ms.")] = 0.5,
    les_cs: Annotated[float, typer.Option(
        "--les-cs", help="Smagorinsky constant of --pulsatile (LES; 0 turns it off).")] = 0.17,
    t_end_ms: Annotated[float | None, typer.Option(
        "--t-end-ms", help="Simulated time of --pulsatile in ms (default: one cardiac cycle). "
        "Shorter runs, e.g. 100 ms of early systole, are for trials.")] = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Place a transcatheter valve on a twin, simulate, and compare with the native valve.

    Steady flow by default (about a minute per solve). With --pulsatile, one cardiac cycle of
    pulsatile flow per valve, and a plot of the cycle next to the result files.
    """
    from cardiotwin import workflows
    from cardiotwin.study import CycleSettings

    with _errors():
        cycle = (CycleSettings(dt_ms=dt_ms, t_end_ms=t_end_ms, smagorinsky_cs=les_cs)
                 if pulsatile else None)
        try:
            with _progress("rehearsal") as prog:
                reh = workflows.rehearse(pseudonym, store=_store(store), actor=_actor(role),
                                         nominal_diameter_mm=size, depth_mm=depth, tilt_deg=tilt,
                                         rotation_deg=rotation, family=family, cycle=cycle,
                                         progress=prog)
        except KeyboardInterrupt:
            if cycle is None:
                raise
            console.print("[yellow]interrupted.[/] Nothing was stored for this rehearsal; run the "
                          "same command again to resume the pulsatile run from its last "
                          f"checkpoint (every {cycle.checkpoint_every_ms:g} ms of simulated time).")
            raise typer.Exit(130) from None
        kind = "pulsatile, " + (f"{reh.after.simulated_ms:g} ms" if not reh.after.whole_cycle
                                else "one cardiac cycle") if reh.pulsatile else "steady"
        _print_comparison(reh, title=f"{pseudonym}: {reh.nominal_diameter_mm:g} mm "
                                     f"valve ({kind})")
        if reh.pulsatile:
            _print_cycle_files(reh)
            for when, w in reh.warnings:
                console.print(f"[yellow]warning ({when}):[/] {w}")
        for w in reh.sizing_warnings:
            console.print(f"[yellow]warning:[/] {w}")


def _print_cycle_files(reh) -> None:
    from cardiotwin.report import write_cycle_plot

    after_dir = Path(reh.after.fields_dir)
    before_csv = Path(reh.before.fields_dir) / "traces.csv"
    if before_csv.is_file():
        png = write_cycle_plot(after_dir / "cycle_comparison.png", before_csv,
                               after_dir / "traces.csv",
                               label_after=f"{reh.nominal_diameter_mm:g} mm valve")
        console.print(f"plot of the cycle: {png}")
    console.print(f"per-step traces (CSV): {after_dir / 'traces.csv'}; fields for ParaView (VTX): "
                  f"{after_dir}/*.bp")
    after = reh.after
    if after.target_pressure_mmhg is not None:
        sbp, dbp = after.target_pressure_mmhg
        console.print(
            f"outlets: three-element Windkessels fitted to {sbp:g}/{dbp:g} mmHg: total resistance "
            f"{after.total_resistance_mmhg_s_ml:.2f} mmHg·s/mL "
            f"({100 * after.proximal_fraction:.1f} % proximal), compliance "
            f"{after.total_compliance_ml_mmhg:.2f} mL/mmHg, Rd·C {after.distal_time_constant_s:.2f} s")
    for when, run in (("native valve", reh.before), ("device", reh.after)):
        if run.resumed_from_step:
            console.print(f"{when}: resumed an interrupted run at step {run.resumed_from_step} "
                          "(its VTX velocity/pressure series starts there)")
    console.print(f"mass balance: outlets sum to the inflow within "
                  f"{after.mass_imbalance_max:.1e} every step; max CFL "
                  f"{after.cfl_max:.2f}; {after.n_dofs:,} dofs, "
                  f"{after.solve_time_min:.1f} min")


# ----------------------------------------------------------------------------------------- device
@device_app.command("list")
def device_list() -> None:
    """List device families and sizes with their sizing ranges and sources."""
    from cardiotwin import workflows

    with _errors():
        cat = workflows.device_catalog()
        for key, fam in cat.families.items():
            t = Table(title=f"{key}: {fam.label}")
            for c in ("size (mm)", "frame height (mm)", "annulus area range (mm²)"):
                t.add_column(c)
            for s in fam.sizes:
                t.add_row(f"{s.nominal_diameter_mm:g}", f"{s.frame_height_mm:g}",
                          f"{s.annulus_area_min_mm2:g}–{s.annulus_area_max_mm2:g}")
            console.print(t)
            console.print(f"sizing: {fam.sizing_source}\ngeometry: {fam.geometry_source}")


@device_app.command("size")
def device_size(pseudonym: str, family: str = "balloon_expandable_thv", store: StoreOpt = None,
                role: RoleOpt = "clinician") -> None:
    """Oversizing of every size on the twin's annulus, and the recommended size."""
    from cardiotwin import workflows

    with _errors():
        rep = workflows.size_device(pseudonym, store=_store(store), actor=_actor(role), family=family)
        t = Table(title=f"{pseudonym}: annulus {rep.annulus_area_mm2:.0f} mm², "
                        f"perimeter {rep.annulus_perimeter_mm:.1f} mm")
        for c in ("size", "area oversizing %", "perimeter oversizing %", "in chart", "warnings"):
            t.add_column(c)
        for s in rep.sizes:
            mark = " ★" if s.nominal_diameter_mm == rep.recommended_mm else ""
            t.add_row(f"{s.nominal_diameter_mm:g}{mark}", f"{s.area_oversizing_pct:+.1f}",
                      f"{s.perimeter_oversizing_pct:+.1f}", "yes" if s.in_chart_range else "no",
                      "; ".join(s.warnings))
        console.print(t)
        for w in rep.warnings:
            console.print(f"[yellow]warning:[/] {w}")


# ----------------------------------------------------------------------------------------- audit
@audit_app.command("verify")
def audit_verify(store: StoreOpt = None) -> None:
    """Verify the audit hash chain; exits 1 and names the first bad record if altered."""
    with _errors():
        res = _store(store).verify_audit()
        if res.ok:
            console.print(f"[green]audit chain intact[/]: {res.n_records} records")
        else:
            err_console.print(f"[bold red]audit chain BROKEN[/] at record {res.first_bad_seq}: {res.reason}")
            raise typer.Exit(code=1)


@audit_app.command("log")
def audit_log(store: StoreOpt = None, role: RoleOpt = "privacy_officer",
              pseudonym: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
              last: Annotated[int, typer.Option(help="Show the last N records.")] = 30) -> None:
    """Show audit records (privacy officers and admins only; the read is itself audited)."""
    with _errors():
        recs = _store(store).audit_records(actor=_actor(role), purpose="audit review",
                                           pseudonym=pseudonym)
        t = Table(title="Audit log")
        cols = ["seq", "time_utc", "actor", "role", "action", "patient_pseudonym", "object", "outcome"]
        for c in cols:
            t.add_column(c)
        for r in recs[-last:]:
            d = r if isinstance(r, dict) else r.__dict__
            t.add_row(*[str(d.get(c, "")) for c in cols])
        console.print(t)


# ----------------------------------------------------------------------------------------- users
@users_app.command("add")
def users_add(username: str, role: Annotated[str, typer.Option(help="Role of the user.")],
              store: StoreOpt = None,
              password: Annotated[str | None, typer.Option(help="Password (prompted when omitted).")] = None) -> None:
    """Add a user who can log in to the app."""
    from cardiotwin import workflows

    with _errors():
        pw = password or typer.prompt("password", hide_input=True, confirmation_prompt=True)
        workflows.add_user(_store(store), username, pw, role)
        console.print(f"user {username} ({role}) added")


@users_app.command("list")
def users_list(store: StoreOpt = None) -> None:
    """List users and roles."""
    from cardiotwin import workflows

    with _errors():
        t = Table(title="Users")
        rows = workflows.list_users(_store(store))
        cols = list(rows[0]) if rows else ["username", "role"]
        for c in cols:
            t.add_column(c)
        for r in rows:
            t.add_row(*[str(r.get(c, "")) for c in cols])
        console.print(t)


# ----------------------------------------------------------------------------------------- live
monitor_app = typer.Typer(
    help="Live monitoring streams over MQTT: replay a recorded patient as a live feed.",
    no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")

BROKER_ENV = "CARDIOTWIN_MQTT_BROKER"


def _serve_handler(store: Path | None, role: str):
    """The handler ``twin serve`` gives every accepted batch: ``handler(pseudonym, observations)``.

    Each batch is printed, then applied to the stored twin of that pseudonym
    (:func:`cardiotwin.workflows.ingest_observations`: stored, assimilated, a new twin version,
    audited). A batch for a pseudonym without a twin, or one the store refuses, is reported and
    the service keeps running.
    """
    from cardiotwin import workflows
    from cardiotwin.errors import CardiotwinError

    st, actor = _store(store), _actor(role)

    def handler(pseudonym, observations) -> None:
        workflows.log_observations(pseudonym, observations)
        shown = ", ".join(f"{o.vital.name} {o.value_as_received:g} {o.unit}"
                          for o in observations[:3])
        console.print(f"{observations[0].time.isoformat()}  {pseudonym}: {shown}"
                      + (f" (+{len(observations) - 3})" if len(observations) > 3 else ""),
                      highlight=False)
        try:
            res = workflows.ingest_observations(pseudonym, observations, store=st, actor=actor)
        except CardiotwinError as exc:
            console.print(f"  not applied to {pseudonym}: {exc}", highlight=False)
            return
        flags = [f for f, on in (("STALE", res.stale), ("DRIFT", res.drift)) if on]
        what = (f"version {res.version}" if res.version is not None
                else f"no new version (still {res.base_version})")
        console.print(f"  twin {pseudonym}: {what}; {res.accepted} accepted, {res.duplicates} "
                      f"duplicate, {len(res.quarantined)} quarantined"
                      + (f"; {' '.join(flags)}" if flags else ""), highlight=False)

    return handler


def _serve_batch_handler(store: Path | None, role: str):
    """The batch handler of ``twin serve --batch-window``: every batch window's observations of
    all twins applied in one store transaction (:func:`cardiotwin.workflows.ingest_batches`),
    one line per batch and one per twin the store refused."""
    from cardiotwin import workflows

    st, actor = _store(store), _actor(role)

    def handler(groups) -> None:
        out = workflows.ingest_batches(groups, store=st, actor=actor)
        for r in out:
            if r.error:
                console.print(f"  not applied to {r.pseudonym}: {r.error}", highlight=False)
        n_obs = sum(len(v) for v in groups.values())
        versions = sum(r.version is not None for r in out)
        console.print(f"batch: {n_obs} observations of {len(groups)} twins -> {versions} new "
                      f"versions, {sum(r.duplicates for r in out)} duplicate", highlight=False)

    return handler


@twin_app.command("serve")
def twin_serve(
    broker: Annotated[str | None, typer.Option(
        "--broker", help="MQTT broker HOST:PORT to subscribe to (your mosquitto). Default: "
        f"${BROKER_ENV}, else an embedded broker (--embedded).")] = None,
    embedded: Annotated[bool, typer.Option(
        "--embedded", help="Start an embedded broker (amqtt) on --broker's address, default "
        "127.0.0.1:1883, and serve from it: for demos; it keeps nothing after it stops.")] = False,
    store: StoreOpt = None,
    topic: Annotated[str, typer.Option(
        help="Topic filter; each topic must be cardiotwin/<pseudonym>/observations.")
    ] = "cardiotwin/+/observations",
    client_id: Annotated[str, typer.Option(
        help="Fixed MQTT client id: the broker keeps the subscription and queues QoS-1 "
        "messages under it while the service is away.")] = "cardiotwin-twin-serve",
    max_seconds: Annotated[float | None, typer.Option(
        "--max-seconds", help="Stop after this many seconds (default: until Ctrl-C).")] = None,
    quarantine: Annotated[Path | None, typer.Option(
        "--quarantine", help="Write the refused messages (one JSON a line, with the reason) "
        "to this file when the service stops.")] = None,
    connect_timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the broker at start.")] = 10.0,
    batch_window: Annotated[float | None, typer.Option(
        "--batch-window", help="Seconds: apply the messages of all twins that arrive within "
        "this window in one store transaction (one disk sync), acknowledging them after it "
        "committed; for many twins at once. Default: one transaction per message.")] = None,
    role: RoleOpt = "clinician",
) -> None:
    """Subscribe to live observations over MQTT and hand every accepted batch to the twin.

    Each message is one FHIR R4 Observation (or Bundle) in JSON on the topic
    cardiotwin/<pseudonym>/observations, at QoS 1. Messages are checked like files are (LOINC
    code, UCUM unit, plausible range, time order, duplicates); refused ones are quarantined
    with the reason and the service goes on. It reconnects by itself after a broker restart,
    and the broker keeps what was published meanwhile (persistent session).

    \b
    Examples:
      cardiotwin twin serve --embedded --max-seconds 60
      cardiotwin twin serve --broker 127.0.0.1:1883
      cardiotwin monitor replay data/100 --broker 127.0.0.1:1883 --subject tw-1 --speed 10
    """
    from cardiotwin import workflows
    from cardiotwin.errors import InputError

    def ready(service, local) -> None:
        if local is not None:
            console.print(f"embedded MQTT broker (amqtt) on {local.address}; publish with "
                          f"'cardiotwin monitor replay RECORD --broker {local.address} "
                          "--subject PSEUDONYM'", highlight=False)
        console.print(f"subscribed to {service.topic} on {service.broker} (QoS 1, client id "
                      f"{service.client_id}); Ctrl-C stops", highlight=False)

    with _errors():
        if batch_window is not None and not batch_window > 0:
            raise InputError(f"--batch-window {batch_window!r}: expected seconds > 0, e.g. 1")
        handlers = ({"handler": _serve_handler(store, role)} if batch_window is None else
                    {"batch_handler": _serve_batch_handler(store, role),
                     "batch_window_s": batch_window})
        service = workflows.serve_observations(
            broker or os.environ.get(BROKER_ENV), embedded=embedded, topic=topic,
            client_id=client_id, max_seconds=max_seconds, connect_timeout_s=connect_timeout,
            on_ready=ready, **handlers)
        stats = service.stats
        console.print(f"{stats.messages} messages: {stats.accepted} observations accepted, "
                      f"{stats.duplicates} duplicates, {stats.quarantined} quarantined, "
                      f"{max(stats.connects - 1, 0)} reconnections", highlight=False)
        if len(service.quarantine):
            console.print(f"quarantined by kind: {service.quarantine.kinds()}")
        if quarantine is not None:
            service.quarantine.write_jsonl(quarantine)
            console.print(f"quarantine written to {quarantine}")


@monitor_app.command("replay")
def monitor_replay(
    record: Annotated[Path, typer.Argument(
        help="A WFDB record with ECG and/or arterial pressure: its path without .hea "
        "(e.g. data/physionet/100).")],
    subject: Annotated[str, typer.Option(
        "--subject", help="The twin's pseudonym the stream is for (cardiotwin twin list); "
        "the topic is cardiotwin/<pseudonym>/observations.")],
    broker: Annotated[str, typer.Option(
        "--broker", help=f"MQTT broker HOST:PORT. Default: ${BROKER_ENV}, else "
        "127.0.0.1:1883.")] = "",
    speed: Annotated[float, typer.Option(
        help="Replay speed: 1 = real time, 10 = ten times faster.")] = 1.0,
    max_beats: Annotated[int | None, typer.Option(
        "--max-beats", help="Send only the first N beat times.")] = None,
    start: Annotated[str | None, typer.Option(
        help="Time of the record's first sample, ISO 8601 with a UTC offset "
        "(default: now).")] = None,
) -> None:
    """Replay a recorded patient (WFDB) as a live MQTT stream of per-beat vitals.

    Heart rate per R-R interval (ECG) and systolic, diastolic, mean pressure and pulse rate
    per beat (arterial pressure) are sent as FHIR R4 Observations at QoS 1, each when its beat
    is due at the chosen speed; the command returns when the broker acknowledged all of them.

    \b
    Example:
      cardiotwin monitor replay ../shared/data/physionet/100 --subject tw-1 \\
          --broker 127.0.0.1:1883 --speed 10 --max-beats 200
    """
    from datetime import datetime

    from cardiotwin import workflows
    from cardiotwin.errors import InputError

    with _errors():
        address = broker or os.environ.get(BROKER_ENV) or "127.0.0.1:1883"
        start_time = None
        if start is not None:
            try:
                start_time = datetime.fromisoformat(start)
            except ValueError:
                raise InputError(f"--start {start!r}: expected ISO 8601 with a UTC offset, "
                                 "e.g. 2024-05-01T10:42:00+02:00") from None
            if start_time.tzinfo is None:
                raise InputError(f"--start {start!r} has no UTC offset; add one, e.g. "
                                 f"{start}+00:00")
        res = workflows.replay_record(record, broker=address, subject=subject, speed=speed,
                                      max_beats=max_beats, start_time=start_time)
        console.print(f"replayed {res.record} to {address} for {res.subject}: "
                      f"{res.observations} observations over {res.beats} beat times, "
                      f"{res.record_seconds:.1f} s of record in {res.wall_seconds:.1f} s "
                      f"(speed {res.speed:g}), all acknowledged", highlight=False)
        if res.reader_rejections:
            console.print(f"{res.reader_rejections} beats refused by the reader (see the log)")


# ----------------------------------------------------------------------------------------- api
api_app = typer.Typer(
    help="The REST API (FastAPI) for systems that integrate by HTTP.", no_args_is_help=True)
app.add_typer(api_app, name="api")


@api_app.command("serve")
def api_serve(
    host: Annotated[str, typer.Option(
        help="Address to listen on. 127.0.0.1 keeps it on this machine; put a TLS reverse "
        "proxy in front before opening it to a network (Basic credentials and tokens travel "
        "in every request).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    store: StoreOpt = None,
    max_body: Annotated[int, typer.Option(
        "--max-body", help="Largest request body in bytes; larger ones get 413.")] = 1 << 20,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the REST API: twin state, history and events, observations in (FHIR R4 JSON).

    Every call but /health authenticates as a user of the store (cardiotwin users add):
    HTTP Basic, or 'Authorization: Bearer TOKEN' with a token from POST /token. Each call is
    role-checked and audited like the app. The OpenAPI schema is at /openapi.json, the
    interactive docs at /docs.

    \b
    Examples:
      cardiotwin users add dr_lee --role clinician
      cardiotwin api serve --port 8080
      curl -u dr_lee http://127.0.0.1:8080/twins/TW-3F2A
      curl -u dr_lee -H 'Content-Type: application/fhir+json' \\
           --data @vitals.json http://127.0.0.1:8080/twins/TW-3F2A/observations
    """
    import uvicorn

    from cardiotwin.api import create_app

    root = store or Path(os.environ.get("CARDIOTWIN_HOME", "cardiotwin-data"))
    with _errors():
        api = create_app(root, max_body_bytes=max_body)
    console.print(f"cardiotwin REST API on http://{host}:{port} (store {root}; docs at "
                  f"http://{host}:{port}/docs); Ctrl-C stops", highlight=False)
    uvicorn.run(api, host=host, port=port, log_level=log_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
