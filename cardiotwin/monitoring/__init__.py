"""Monitoring data in: validated observations from FHIR, HL7 v2, WFDB and CSV, their checks and
quarantine, and beat detection on waveforms (shared/DESIGN.md §5 "Monitoring and the twin").

``monitoring`` imports only the base modules (units, errors, privacy, provenance); the twin will
import it to calibrate and assimilate. Formats, codes, units and ranges: ``docs/monitoring.md``.
"""

from cardiotwin.monitoring.checks import Screen, Verdict, check_plausible
from cardiotwin.monitoring.fhir import read_fhir
from cardiotwin.monitoring.hl7v2 import read_hl7v2
from cardiotwin.monitoring.observations import (
    SI_UNITS,
    UCUM_UNITS,
    VITALS,
    Batch,
    Observation,
    VitalSign,
)
from cardiotwin.monitoring.quarantine import Quarantine, Rejection
from cardiotwin.monitoring.table import ColumnMap, read_table
from cardiotwin.monitoring.waveforms import PressureBeats, detect_pressure_beats, detect_r_peaks
from cardiotwin.monitoring.wfdb_records import WaveformRecord, load_record, read_wfdb

__all__ = [
    "SI_UNITS", "UCUM_UNITS", "VITALS", "Batch", "ColumnMap", "Observation", "PressureBeats",
    "Quarantine", "Rejection", "Screen", "Verdict", "VitalSign", "WaveformRecord",
    "check_plausible", "detect_pressure_beats", "detect_r_peaks", "load_record", "read_fhir",
    "read_hl7v2", "read_table", "read_wfdb",
]
