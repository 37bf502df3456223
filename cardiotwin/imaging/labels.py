"""Label maps a user brings, and how any two label maps compare.

A user's own segmentation (TotalSegmentator, 3D Slicer, nnU-Net, a hand correction) comes as a
NIfTI, NRRD or DICOM SEG file with the tool's own label values. :func:`read_labels` reads it
(orientation handled: NIfTI is stored in RAS, DICOM and cardiotwin in LPS), :func:`parse_label_map`
reads the user's ``aorta=52,lv_blood=3`` mapping, :func:`relabel` maps the file's values onto
cardiotwin's structures (:data:`~cardiotwin.imaging.volume.LABELS`) and :func:`resample_labels`
puts them on the CT grid (nearest neighbour, refused when they do not lie in the image).

A twin's labels come from :func:`twin_segmentation`: the built-in segmentation (with any
segmentation plug-ins) or, when the user gives a label file, that file mapped and resampled by
:func:`segmentation_from_labels`; :func:`user_label_spec` checks the user's request (file and
mapping) before any work is done.

:func:`evaluate_labels` scores a label map against a reference per structure: Dice, the 95th
percentile Hausdorff distance and the mean surface distance (the measures of the Medical
Segmentation Decathlon; Antonelli M et al., Nat Commun 2022;13:4128).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cardiotwin.errors import InputError
from cardiotwin.imaging.metrics import dice, surface_distances_mm
from cardiotwin.imaging.volume import ALL_LABELS, LabelMap, Volume

__all__ = [
    "REQUIRED_STRUCTURES", "LabelSpec", "SegmentationQuality", "StructureScore",
    "evaluate_labels", "parse_label_map", "read_labels", "relabel", "resample_labels",
    "segmentation_from_labels", "twin_segmentation", "user_label_spec",
]

LabelSpec = Mapping[str, tuple[int, ...]]
"""Structure name → the label values that make it up in a file (``{"aorta": (52,)}``)."""

#: Structures a user's label map must name for a twin (its LV outflow and aorta).
REQUIRED_STRUCTURES = ("lv_blood", "aorta")

MIN_OVERLAP_FRACTION = 0.5
"""Share of a label map's labelled voxels that must lie inside the CT for it to be resampled
onto the CT; below it the file belongs to another scan or another coordinate convention."""


def parse_label_map(text: str, *, structures: Mapping[str, int] = ALL_LABELS) -> dict[str, tuple[int, ...]]:
    """Read a ``name=value[+value...]`` list, e.g. ``"aorta=52,lv_blood=3+5,myocardium=2"``.

    Names must be cardiotwin structures (``structures``, by default
    :data:`~cardiotwin.imaging.volume.ALL_LABELS`: the left heart and aorta, and the neighbouring
    ``la``, ``right_heart``, ``svc`` and ``ivc``); values are the positive integers the file uses.

    Raises
    ------
    InputError
        A malformed entry, an unknown structure, a value that is not a positive integer, a
        structure named twice or a value given to two structures; the message names the entry.
    """
    out: dict[str, tuple[int, ...]] = {}
    owner: dict[int, str] = {}
    entries = [e.strip() for e in re.split(r"[,;]", text or "") if e.strip()]
    if not entries:
        raise InputError("the label map is empty: give name=value pairs such as "
                         "'aorta=52,lv_blood=3' (names: " + ", ".join(_names(structures)) + ")")
    for entry in entries:
        name, sep, values = entry.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise InputError(f"label map entry {entry!r} is not name=value (e.g. 'aorta=52')")
        if name not in structures or name == "background":
            raise InputError(f"label map entry {entry!r}: unknown structure {name!r}; use one of "
                             + ", ".join(_names(structures)))
        if name in out:
            raise InputError(f"label map entry {entry!r}: {name!r} is given twice; join its values "
                             "with '+' (e.g. 'aorta=52+53')")
        vals = []
        for v in values.split("+"):
            v = v.strip()
            if not v.isdigit() or int(v) < 1:
                raise InputError(f"label map entry {entry!r}: {v!r} is not a positive integer label")
            if int(v) in owner:
                raise InputError(f"label map entry {entry!r}: value {v} already belongs to "
                                 f"{owner[int(v)]!r}")
            owner[int(v)] = name
            vals.append(int(v))
        out[name] = tuple(vals)
    return out


def _names(structures: Mapping[str, int]) -> list[str]:
    return [n for n in structures if n != "background"]


def read_labels(path: str | Path) -> LabelMap:
    """Read a label file: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.seg.nrrd``) or a
    DICOM Segmentation (``.dcm``; each segment's number becomes its value and its SegmentLabel
    its name, cardiotwin's structure name for a SEG that cardiotwin wrote).

    The values are kept as stored; :func:`relabel` maps them onto cardiotwin's structures.

    Raises
    ------
    InputError
        A missing file, an unknown suffix, non-integer voxels or an unreadable SEG.
    """
    from cardiotwin.imaging import export

    path = Path(path)
    if not path.is_file():
        raise InputError(f"label file {path} does not exist")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return export.read_nifti_labels(path)
    if name.endswith(".nrrd"):
        return export.read_nrrd_labels(path)
    if name.endswith(".dcm") or "." not in name:
        return _read_dicom_seg(path)
    raise InputError(f"label file {path}: unknown format; use NIfTI (.nii/.nii.gz), NRRD (.nrrd) "
                     "or a DICOM Segmentation (.dcm)")


def _read_dicom_seg(path: Path) -> LabelMap:
    """A DICOM SEG as a label map in LPS: highdicom's volume (array ``[slice, row, column]``,
    affine of those indices) becomes cardiotwin's ``[k, j, i]`` grid."""
    import highdicom as hd
    import pydicom

    try:
        seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(path))
        vol = seg.get_volume(combine_segments=True, relabel=False)
    except Exception as exc:  # highdicom raises many types for a file that is not a usable SEG
        raise InputError(f"{path} is not a readable DICOM Segmentation ({exc})") from None
    arr = np.asarray(vol.array)
    if arr.ndim != 3:
        raise InputError(f"{path}: expected a 3-D segmentation, got shape {arr.shape}")
    m = np.asarray(vol.affine, dtype=float)
    cols = [m[:3, 2], m[:3, 1], m[:3, 0]]  # i = column, j = row, k = slice
    spacing = [float(np.linalg.norm(c)) for c in cols]
    direction = np.column_stack([c / s for c, s in zip(cols, spacing, strict=True)])
    from cardiotwin.imaging.export import SEGMENT_CODES

    ours = {label: key for key, (label, _, _) in SEGMENT_CODES.items()}  # a SEG cardiotwin wrote
    names = {"background": 0}
    for desc in seg.SegmentSequence:
        label = str(getattr(desc, "SegmentLabel", "")) or f"segment_{desc.SegmentNumber}"
        names[ours.get(label, label)] = int(desc.SegmentNumber)
    arr = arr.astype(np.uint16 if arr.max(initial=0) > 255 else np.uint8)
    return LabelMap(Volume(arr, tuple(spacing), tuple(m[:3, 3]), direction), names)


def relabel(labels: LabelMap, spec: LabelSpec, *, source: str = "the label file") -> LabelMap:
    """The structures of ``spec`` with cardiotwin's values (:data:`ALL_LABELS`); other values → 0.

    Raises
    ------
    InputError
        A value of ``spec`` that the map does not contain (the message lists those it does).
    """
    arr = labels.array
    present = set(np.unique(arr).tolist()) - {0}
    out = np.zeros(arr.shape, dtype=np.uint8)
    for name, values in spec.items():
        missing = [v for v in values if v not in present]
        if missing:
            raise InputError(
                f"{source} has no voxel with value {', '.join(map(str, missing))} (given for "
                f"{name!r}); values present: {', '.join(map(str, sorted(present))) or 'none'}")
        out[np.isin(arr, values)] = ALL_LABELS[name]
    names = {"background": 0, **{n: ALL_LABELS[n] for n in spec}}
    return LabelMap(labels.volume.with_array(out), names)


def resample_labels(labels: LabelMap, grid: Volume, *, source: str = "the label file") -> LabelMap:
    """``labels`` on the grid of ``grid`` (nearest neighbour, in patient coordinates).

    Raises
    ------
    InputError
        Fewer than :data:`MIN_OVERLAP_FRACTION` of the labelled voxels lie inside the CT: the
        labels belong to another scan, or were written in another coordinate convention.
    """
    if labels.volume.same_grid(grid):
        return labels
    src = labels.volume
    idx = np.argwhere(src.array > 0)
    if len(idx) == 0:
        raise InputError(f"{source} has no labelled voxel")
    ijk_src = idx[:, ::-1].astype(float)
    ijk_dst = grid.physical_to_index(src.index_to_physical(ijk_src))
    shape_ijk = np.asarray(grid.shape[::-1])
    inside = np.all((ijk_dst > -0.5) & (ijk_dst < shape_ijk - 0.5), axis=1)
    if inside.mean() < MIN_OVERLAP_FRACTION:
        raise InputError(
            f"only {100 * inside.mean():.0f} % of the labelled voxels of {source} lie inside the "
            "CT: it belongs to another scan or another coordinate convention; export the labels "
            "on this series (same frame of reference)")
    # pull: every CT voxel takes the label of the nearest label-map voxel
    kk, jj, ii = np.indices(grid.shape)
    ijk = np.stack([ii, jj, kk], axis=-1).reshape(-1, 3).astype(float)
    back = np.rint(src.physical_to_index(grid.index_to_physical(ijk))).astype(np.int64)
    ok = np.all((back >= 0) & (back < np.asarray(src.shape[::-1])), axis=1)
    out = np.zeros(len(ijk), dtype=src.array.dtype)
    b = back[ok]
    out[ok] = src.array[b[:, 2], b[:, 1], b[:, 0]]
    return LabelMap(grid.with_array(out.reshape(grid.shape)), dict(labels.names))


def user_label_spec(labels: str | Path | None,
                    label_map: str | LabelSpec | None) -> dict[str, tuple[int, ...]] | None:
    """The structure → label values mapping of a user's label file, checked before any work.

    Parameters
    ----------
    labels : path, optional
        The user's label file (None: the built-in segmentation is used).
    label_map : str or mapping, optional
        ``"aorta=52,lv_blood=3"`` (:func:`parse_label_map`) or a mapping already parsed.

    Returns
    -------
    dict or None
        None without a label file; else the mapping, which names every structure of
        :data:`REQUIRED_STRUCTURES`.

    Raises
    ------
    InputError
        A map without a file, a file without a map (the message gives an example for
        TotalSegmentator's labels), or a map that lacks ``lv_blood`` or ``aorta``.
    """
    if labels is None:
        if label_map is not None:
            raise InputError("a label map was given without a label file (--labels FILE)")
        return None
    if label_map is None:
        raise InputError(f"say which values of {Path(labels).name} are which structure, e.g. "
                         "--label-map aorta=52,lv_blood=51 (TotalSegmentator's 'total' task: "
                         "aorta 52; its heart label 51 is all four chambers, so give the LV "
                         "blood pool of a heart-chambers task or your own)")
    spec = parse_label_map(label_map) if isinstance(label_map, str) else dict(label_map)
    missing = [n for n in REQUIRED_STRUCTURES if n not in spec]
    if missing:
        raise InputError(f"the label map needs {' and '.join(missing)} (the twin's LV outflow "
                         "and aorta); got " + ", ".join(spec))
    return spec


def segmentation_from_labels(ct: Volume, labels: str | Path, spec: LabelSpec):
    """A user's label file as the segmentation of ``ct``, and the record to store with the twin.

    The file is read (:func:`read_labels`), its values mapped onto cardiotwin's structures
    (:func:`relabel`) and resampled onto the CT grid (:func:`resample_labels`); the blood and
    calcium thresholds (HU) are estimated from the CT
    (:func:`~cardiotwin.imaging.segment.estimate_intensities`).

    Returns
    -------
    (Segmentation, dict)
        The :class:`~cardiotwin.imaging.segment.Segmentation` (``report["source"]`` is
        ``"user labels"``) and its record: source, the file's SHA-256 (``labels_sha256``), the
        label map and the thresholds in HU.

    Raises
    ------
    InputError
        An unreadable file, a value of ``spec`` the file lacks, or labels outside the CT.
    """
    from cardiotwin.imaging import segment
    from cardiotwin.provenance import sha256_file

    name = Path(labels).name
    mapped = relabel(read_labels(labels), spec, source=name)
    on_ct = resample_labels(mapped, ct, source=name)
    inten = segment.estimate_intensities(ct)
    seg = segment.Segmentation(on_ct, inten.blood_threshold_hu, inten.calcium_threshold_hu,
                               report={"source": "user labels"})
    return seg, {"source": "user labels", "labels_sha256": sha256_file(labels),
                 "label_map": {k: list(v) for k, v in spec.items()},
                 "blood_threshold_hu": seg.blood_threshold_hu,
                 "calcium_threshold_hu": seg.calcium_threshold_hu}


def twin_segmentation(ct: Volume, *, labels: str | Path | None = None,
                      spec: LabelSpec | None = None, settings: Any = None,
                      segmenters: tuple[str, ...] = ()) -> tuple[Any, dict[str, Any]]:
    """The segmentation a twin is built from, and the record to store with it.

    Parameters
    ----------
    ct : Volume
        The CT (HU).
    labels : path, optional
        The user's label file; None runs the built-in segmentation.
    spec : mapping, optional
        Its structure → values mapping; required with ``labels`` and checked by
        :func:`user_label_spec`.
    settings : SegmentationSettings, optional
        Overrides of the built-in segmentation (ignored with ``labels``).
    segmenters : tuple of str
        Installed segmentation plug-ins to use
        (:func:`cardiotwin.imaging.plugins.segment_with_plugins`).

    Returns
    -------
    (Segmentation, dict)
        The segmentation and its record: ``source`` (``"cardiotwin"`` or ``"user labels"``) and
        the thresholds in HU; with plug-ins the source of each structure and the plug-ins used;
        with ``labels`` see :func:`segmentation_from_labels`.
    """
    if labels is not None:
        return segmentation_from_labels(ct, labels, user_label_spec(labels, spec))
    from cardiotwin.imaging.plugins import segment_with_plugins

    seg = segment_with_plugins(ct, use=segmenters, settings=settings)
    record: dict[str, Any] = {"source": "cardiotwin", "blood_threshold_hu": seg.blood_threshold_hu,
                              "calcium_threshold_hu": seg.calcium_threshold_hu}
    if segmenters:
        record["structure_sources"] = seg.report.get("structure_sources", {})
        record["plugins"] = seg.report.get("plugins", [])
    return seg, record


@dataclass(frozen=True)
class StructureScore:
    """Agreement of one structure with its reference.

    ``dice`` in [0, 1]; ``hd95_mm`` the 95th-percentile symmetric Hausdorff distance and
    ``mean_surface_distance_mm`` the mean symmetric surface distance, both in mm (None when
    either mask is empty); volumes in mL.
    """

    structure: str
    dice: float
    hd95_mm: float | None
    mean_surface_distance_mm: float | None
    volume_ml: float
    reference_volume_ml: float


@dataclass(frozen=True)
class SegmentationQuality:
    """Per-structure scores of a label map against a reference (:func:`evaluate_labels`)."""

    scores: tuple[StructureScore, ...]

    def score(self, structure: str) -> StructureScore:
        for s in self.scores:
            if s.structure == structure:
                return s
        raise InputError(f"no score for {structure!r}; scored: "
                         + ", ".join(s.structure for s in self.scores))

    def to_dict(self) -> dict[str, dict[str, float | None]]:
        return {s.structure: {"dice": s.dice, "hd95_mm": s.hd95_mm,
                              "mean_surface_distance_mm": s.mean_surface_distance_mm,
                              "volume_ml": s.volume_ml,
                              "reference_volume_ml": s.reference_volume_ml}
                for s in self.scores}


def evaluate_labels(labels: LabelMap, reference: LabelMap, *, structures: LabelSpec | None = None,
                    reference_structures: LabelSpec | None = None) -> SegmentationQuality:
    """Score ``labels`` against ``reference`` per structure.

    Parameters
    ----------
    labels, reference : LabelMap
        The reference is resampled onto the grid of ``labels`` when the grids differ
        (:func:`resample_labels`).
    structures, reference_structures : mapping, optional
        Structure → label values in each map; default: the names both maps carry, with their
        own values.

    Raises
    ------
    InputError
        No structure in common, or reference labels outside the image.
    """
    def spec_of(m: LabelMap) -> dict[str, tuple[int, ...]]:
        return {n: (v,) for n, v in m.names.items() if n != "background"}

    mine = dict(structures) if structures is not None else spec_of(labels)
    theirs = dict(reference_structures) if reference_structures is not None else spec_of(reference)
    common = [n for n in mine if n in theirs]
    if not common:
        raise InputError("the two label maps share no structure name; give the mapping of each "
                         "(e.g. --map aorta=3 --truth-map aorta=52)")
    reference = resample_labels(reference, labels.volume, source="the reference labels")
    voxel_ml = labels.volume.voxel_volume_mm3 * 1e-3
    spacing = labels.volume.spacing_mm
    scores = []
    for name in common:
        a = np.isin(labels.array, mine[name])
        b = np.isin(reference.array, theirs[name])
        hd95 = msd = None
        if a.any() and b.any():
            # both directed distance sets once (each is a full-grid distance transform): HD95 as
            # imaging.metrics.hausdorff_mm takes it (the larger directed 95th percentile), MSD
            # as their mean
            d_ab = surface_distances_mm(a, b, spacing)
            d_ba = surface_distances_mm(b, a, spacing)
            hd95 = float(max(np.percentile(d_ab, 95.0), np.percentile(d_ba, 95.0)))
            msd = float(np.mean(np.concatenate([d_ab, d_ba])))
        scores.append(StructureScore(name, dice(a, b), hd95, msd, float(a.sum()) * voxel_ml,
                                     float(b.sum()) * voxel_ml))
    return SegmentationQuality(tuple(scores))
