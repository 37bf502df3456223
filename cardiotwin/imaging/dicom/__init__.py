"""DICOM image series: reading into a :class:`~cardiotwin.imaging.volume.Volume`, and writing.

The public surface is re-exported here (``from cardiotwin.imaging.dicom import read_series``);
each step lives in its own module:

=========================================  =========================================================
:mod:`~cardiotwin.imaging.dicom.headers`   one file's header up to its pixel data
                                           (:class:`HeaderRecord`; fast ``struct`` walk or pydicom),
                                           the one header reader of the package and of
                                           :mod:`cardiotwin.imaging.discovery`
:mod:`~cardiotwin.imaging.dicom.series`    grouping files into series, unreadable files,
                                           :func:`list_series`, choosing the series to read
:mod:`~cardiotwin.imaging.dicom.frames`    the image frames of a file: single-frame, enhanced
                                           multi-frame (functional groups), Siemens mosaic tiles
:mod:`~cardiotwin.imaging.dicom.phases`    cardiac phases (positions repeated in time)
:mod:`~cardiotwin.imaging.dicom.volumes`   several volumes in one series (b-values, echoes,
                                           acquisitions), read one at a time (``volume=``)
:mod:`~cardiotwin.imaging.dicom.pixels`    pixel decoding (transfer syntaxes), rescale, MONOCHROME1
:mod:`~cardiotwin.imaging.dicom.resample`  tilted / unevenly spaced stacks onto a regular grid
:mod:`~cardiotwin.imaging.dicom.stack`     sorting along the slice normal, spacing and tilt checks,
                                           the Volume: :func:`read_series`, :func:`read_phases`
:mod:`~cardiotwin.imaging.dicom.write`     :func:`write_ct_series`
=========================================  =========================================================

A series chosen from a catalogue (:func:`cardiotwin.imaging.discovery.scan_tree` and
:func:`~cardiotwin.imaging.discovery.select_series`) is read without parsing its headers again:
``read_series(selection.files, series_uid=..., headers=selection.headers)``.

Patient names are never written to the log and never put in :attr:`Volume.metadata`.
"""

from cardiotwin.imaging.dicom.headers import NO_SERIES_UID, HeaderRecord
from cardiotwin.imaging.dicom.series import SeriesInfo, list_series
from cardiotwin.imaging.dicom.stack import read_phases, read_series
from cardiotwin.imaging.dicom.write import write_ct_series

__all__ = [
    "NO_SERIES_UID",
    "HeaderRecord",
    "SeriesInfo",
    "list_series",
    "read_phases",
    "read_series",
    "write_ct_series",
]
