"""``cardiotwin dicom``: scan, de-identify and convert DICOM folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cardiotwin.cli._common import (
    RoleOpt,
    StoreOpt,
    actor_for,
    console,
    dicom_hints,
    errors,
    progress,
    store_at,
)

dicom_app = typer.Typer(help="DICOM folders.", no_args_is_help=True)


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
    from cardiotwin import workflows

    with errors():
        st, actor = store_at(store), actor_for(role)
        if as_json:
            catalog, sel = workflows.scan_dicom(path, store=st, actor=actor, rule=select)
        else:
            with progress("scan") as prog:
                catalog, sel = workflows.scan_dicom(path, store=st, actor=actor, rule=select,
                                                    progress=prog)
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
    from cardiotwin import workflows
    from cardiotwin.errors import InputError

    with errors():
        k: bytes | Path | None = None
        if key_file is not None:
            k = key_file
        elif key:
            try:
                k = bytes.fromhex(key.strip())
            except ValueError:
                raise InputError("--key / CARDIOTWIN_DEID_KEY must be hexadecimal") from None
        rep = workflows.deidentify_dicom(
            in_dir, out_dir, store=store_at(store), actor=actor_for(role),
            retain_dates=retain_dates, clean_descriptors=clean_descriptors, record_path=record,
            key=k, refuse_unknown_burned_in=not accept_unknown_burned_in)
        console.print(f"de-identified {len(rep.files)} files into {rep.out_dir} "
                      f"({len(rep.skipped)} skipped) in {rep.elapsed_s:.1f} s; "
                      f"record {rep.record_path}", highlight=False)


_CONVERT_SUFFIXES = (".nii", ".nii.gz", ".nrrd")


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
    from cardiotwin import workflows
    from cardiotwin.errors import InputError

    with errors():
        name = out.name.lower()
        if not name.endswith(_CONVERT_SUFFIXES):
            raise InputError(f"OUT must end with .nii, .nii.gz or .nrrd; got {out.name!r}")
        if out.exists() and not force:
            raise InputError(f"{out} exists; pass --force to replace it")
        if select is not None and series is not None:
            raise InputError("give either --select or --series, not both")
        with dicom_hints("convert"):
            vol, written, picked = workflows.convert_dicom(
                in_path, out, store=store_at(store), actor=actor_for(role), rule=select,
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
