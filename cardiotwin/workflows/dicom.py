"""DICOM use cases: folders de-identified (PS3.15 Annex E) with the store's pseudonym key,
catalogued or converted (audited), and the phantom CT written as a DICOM series (no patient)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardiotwin.provenance import sha256_file
from cardiotwin.store import Actor, Store
from cardiotwin.study import (
    Progress,
)
from cardiotwin.workflows._common import audited_dicom


def deidentify_dicom(in_dir: str | Path, out_dir: str | Path, *, store: Store, actor: Actor,
                     retain_dates: bool = False, clean_descriptors: bool = False,
                     record_path: str | Path | None = None, key: bytes | Path | None = None,
                     refuse_unknown_burned_in: bool = True,
                     purpose: str = "de-identification"):
    """De-identify a DICOM folder (PS3.15 Annex E Basic profile) and audit it.

    The pseudonyms are keyed with the store's key (or ``key``: the key's bytes, or a key file
    read with :func:`cardiotwin.imaging.deid.read_key_file`), so a patient de-identified here
    maps to the same twin as one scanned by :func:`build_twin`. The audit record names the
    pseudonyms, the file counts and the hash of the de-identification record, never a name or
    an input path. A refusal (e.g. burned-in annotation) is audited as a failure and re-raised;
    nothing is left in ``out_dir`` then.

    Returns
    -------
    cardiotwin.imaging.deid.DeidReport
    """
    from cardiotwin.imaging import deid

    if isinstance(key, Path):
        key = deid.read_key_file(key)
    with audited_dicom(store, "dicom.deidentify", "deidentify", actor=actor,
                        purpose=purpose) as details:
        report = deid.deidentify_tree(
            in_dir, out_dir, key=key if key is not None else store.pseudonym_key(),
            retain_dates=retain_dates, clean_descriptors=clean_descriptors,
            record_path=record_path, refuse_unknown_burned_in=refuse_unknown_burned_in)
        details.update({"files": len(report.files), "skipped": len(report.skipped),
                        "pseudonyms": sorted({f.pseudonym for f in report.files}),
                        "retain_dates": retain_dates, "clean_descriptors": clean_descriptors,
                        "record_sha256": sha256_file(report.record_path)})
    return report


def scan_dicom(path: str | Path, *, store: Store, actor: Actor, rule: str | None = None,
               purpose: str = "data management", progress: Progress | None = None):
    """Catalogue the DICOM series under a folder (headers only) and audit the read.

    Patients are labelled with the store's keyed pseudonyms (those their twins get). ``rule``
    (:func:`cardiotwin.imaging.discovery.select_series`) also picks a series. The audit record
    holds the counts and the pseudonyms, never a name or the folder's path.

    Returns
    -------
    (SeriesCatalog, SeriesSelection or None)
    """
    from cardiotwin.imaging import discovery

    with audited_dicom(store, "dicom.read", "scan", actor=actor, purpose=purpose) as details:
        catalog = discovery.scan_tree(path, key=store.pseudonym_key(), progress=progress)
        selection = discovery.select_series(catalog, rule=rule) if rule else None
        details.update({"files": catalog.n_files, "series": len(catalog.series),
                        "pseudonyms": sorted({p.label for p in catalog.patients})})
    return catalog, selection


def convert_dicom(source: str | Path, out: str | Path, *, store: Store, actor: Actor,
                  rule: str | None = None, series_uid: str | None = None,
                  resample: bool = False, phase: float | None = None,
                  volume: int | str | None = None, min_slices: int = 2,
                  purpose: str = "research export") -> tuple[Any, Path, str]:
    """Write one DICOM series as a NIfTI (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``) volume.

    The series is chosen by ``series_uid`` or ``rule`` (else ``source`` must hold one series);
    ``phase`` picks a phase of a 4-D series and ``volume`` one volume of a multi-volume series
    (index or selector such as ``"b=1000"``; see :func:`cardiotwin.imaging.dicom.read_series`);
    ``min_slices=1`` converts a single 2-D image.
    The written header carries geometry only (see :mod:`cardiotwin.imaging.export`). The audit
    record names the patient's pseudonym, the format, the shape and the output's SHA-256, never
    a name or a path. A refused series is audited as a failure and re-raised; nothing is written.

    Returns
    -------
    (Volume, Path, str)
        The volume (identifying metadata removed, ``metadata["pseudonym"]`` set when the
        series has a PatientID), the file written and the selection reason ('' without ``rule``).
    """
    from cardiotwin.imaging import deid, dicom, discovery, export

    out = Path(out)
    fmt = "nrrd" if out.name.lower().endswith(".nrrd") else "nifti"
    with audited_dicom(store, "dicom.read", "convert", actor=actor, purpose=purpose) as details:
        picked = ""
        files: str | Path | list[Path] = source
        headers = None
        if rule is not None:
            sel = discovery.select_series(discovery.scan_tree(source), rule=rule)
            files, series_uid, picked = list(sel.files), sel.series_uid, sel.reason
            headers = sel.headers
        raw = dicom.read_series(files, series_uid=series_uid, resample=resample, phase=phase,
                                headers=headers, volume=volume, min_slices=min_slices)
        vol = (deid.deidentify_volume(raw, store.pseudonym_key())
               if raw.metadata.get("patient_id") else deid.strip_identifiers(raw))
        del raw
        written = export.write_nrrd(vol, out) if fmt == "nrrd" else export.write_nifti(vol, out)
        details.update({"pseudonym": vol.metadata.get("pseudonym"), "format": fmt,
                        "shape": list(vol.shape), "output_sha256": sha256_file(written)})
    return vol, written, picked


@dataclass(frozen=True)
class PhantomStudy:
    """A phantom CT written as DICOM (:func:`write_phantom`): its files, its labels file and the
    phantom itself (ground truth in ``phantom.truth``)."""

    dicom_dir: Path
    files: tuple[Path, ...]
    labels_path: Path | None
    phantom: Any


def write_phantom(out_dir: str | Path, *, seed: int = 0, spacing_mm: float = 1.0,
                  annulus_diameter_mm: float | None = None,
                  valve_orifice_area_mm2: float | None = None,
                  write_labels: bool = True) -> PhantomStudy:
    """Write the parametric contrast-CT phantom as a DICOM series in ``out_dir/dicom`` (replacing
    an earlier one) and, with ``write_labels``, its ground-truth labels as ``out_dir/labels.nii.gz``.

    The phantom is no patient's data: nothing is audited. Options left None keep the
    :class:`~cardiotwin.imaging.phantom.PhantomParameters` defaults.
    """
    import shutil

    from cardiotwin.imaging import dicom, phantom

    out_dir = Path(out_dir)
    opts: dict[str, Any] = {"spacing_mm": (spacing_mm,) * 3}
    if annulus_diameter_mm is not None:
        opts["annulus_diameter_mm"] = annulus_diameter_mm
    if valve_orifice_area_mm2 is not None:
        opts["valve_orifice_area_mm2"] = valve_orifice_area_mm2
    ph = phantom.make_phantom(phantom.PhantomParameters(**opts), seed=seed)
    dicom_dir = out_dir / "dicom"
    if dicom_dir.exists():
        shutil.rmtree(dicom_dir)
    files = tuple(Path(f) for f in dicom.write_ct_series(ph.ct, dicom_dir))
    labels_path = None
    if write_labels:
        import SimpleITK as sitk

        lab = ph.labels.volume
        img = sitk.GetImageFromArray(lab.array)
        img.SetSpacing(lab.spacing_mm)
        img.SetOrigin(lab.origin_mm)
        img.SetDirection(lab.direction.flatten().tolist())
        labels_path = out_dir / "labels.nii.gz"
        sitk.WriteImage(img, str(labels_path))
    return PhantomStudy(dicom_dir, files, labels_path, ph)

