"""Imaging: DICOM reading and writing, series discovery, de-identification, phantoms, segmentation.

All coordinates are DICOM patient coordinates (LPS, mm). Imaging sits below geometry (DESIGN.md
§3) and never imports it.

Modules
-------
volume
    :class:`~cardiotwin.imaging.volume.Volume` (array + affine) and
    :class:`~cardiotwin.imaging.volume.LabelMap` with the label values ``LABELS``.
anatomy
    :class:`~cardiotwin.imaging.anatomy.AorticRootLandmarks`, the aortic-root measurement record
    shared by the phantom's ground truth and :mod:`cardiotwin.geometry.landmarks`.
dicom
    Package: one file's header (``headers``), series in a folder (``series``), frames of a file
    incl. enhanced multi-frame and Siemens mosaics (``frames``), cardiac phases (``phases``),
    pixel decoding and rescale (``pixels``), resampling (``resample``), stacking into a Volume
    (``stack``: ``read_series``, ``read_phases``) and writing (``write``: ``write_ct_series``).
discovery
    Package: folder trees and DICOMDIRs catalogued as patients → studies → series (``scan``,
    ``dicomdir``, ``summary``, ``catalog``) and selection rules (``select``).
deid, annex_e
    De-identification (DICOM PS3.15 Annex E Basic profile and options) and its action table.
export
    NIfTI, NRRD and DICOM SEG output.
phantom
    The parametric contrast-CT phantom with exact ground truth.
segment
    Classical segmentation of contrast CT (blood pool, aorta / LV split, calcium).
plugins
    Segmentation plug-ins (entry-point group ``cardiotwin.segmenters``): a locally installed
    model replaces the default per structure (``segment_with_plugins``, ``combine``).
metrics
    Segmentation quality: Dice, Hausdorff.
"""
