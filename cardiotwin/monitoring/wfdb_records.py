"""Read WFDB (PhysioNet) records: ECG and arterial-pressure waveforms, and the per-beat vitals
derived from them.

Named ``wfdb_records`` so that it does not shadow the ``wfdb`` package it uses. Multi-rate
records are read at each signal's own rate (``smooth_frames=False``). An ECG channel is one in
mV with an ECG lead name; an arterial pressure channel one in mmHg named ``ABP``, ``ART``, ``AP``
or ``BP``. :func:`read_wfdb` turns the waveforms into observations: the heart rate of every R-R
interval (8867-4, device ``<record>:<lead>``) and, per pressure beat, systolic, diastolic and
mean pressure (8480-6, 8462-4, 8478-0) and the pulse rate (8867-4, device ``<record>:<ABP>``).

WFDB headers store a start time without a timezone (and often none at all): give
``default_timezone=`` for the former and ``start_time=`` for the latter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import numpy as np

from cardiotwin.errors import InputError, ObservationError
from cardiotwin.monitoring.observations import Batch, make_observation, utc_time
from cardiotwin.monitoring.quarantine import Rejection
from cardiotwin.monitoring.waveforms import detect_pressure_beats, detect_r_peaks

logger = logging.getLogger(__name__)

ECG_LEADS = frozenset({"I", "II", "III", "AVR", "AVL", "AVF", "V", "V1", "V2", "V3", "V4", "V5",
                       "V6", "MLI", "MLII", "MLIII", "MCL1", "MCL", "ECG", "ECG1", "ECG2"})
"""Signal names (upper case) taken for ECG leads."""

PRESSURE_NAMES = frozenset({"ABP", "ART", "AP", "BP", "AOBP"})
"""Signal names (upper case) taken for arterial pressure."""


@dataclass(frozen=True)
class Waveform:
    """One signal of a record.

    Attributes
    ----------
    name : str
        The record's signal name (``"MLII"``, ``"ABP"``).
    samples : ndarray
        Physical values (NaN where the record marks a sample missing).
    fs_hz : float
        This signal's sampling rate, Hz.
    unit : str
        The record's unit of the signal (``"mV"``, ``"mmHg"``).
    """

    name: str
    samples: np.ndarray
    fs_hz: float
    unit: str


@dataclass(frozen=True)
class WaveformRecord:
    """A WFDB record's signals and its start time (naive, as the header says, or None)."""

    name: str
    waveforms: dict[str, Waveform] = field(default_factory=dict)
    base_time: datetime | None = None

    def ecg(self) -> list[Waveform]:
        """The ECG leads, in record order."""
        return [w for w in self.waveforms.values()
                if w.name.upper() in ECG_LEADS and w.unit.lower() == "mv"]

    def pressure(self) -> list[Waveform]:
        """The arterial pressure channels, in record order."""
        return [w for w in self.waveforms.values()
                if w.name.upper() in PRESSURE_NAMES and w.unit.lower() == "mmhg"]


def load_record(path: str | Path) -> WaveformRecord:
    """Read a WFDB record (``path`` is the record name without ``.hea``).

    Raises
    ------
    InputError
        The header or the signal files cannot be read.
    """
    import wfdb

    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".hea", ".dat") else path
    try:
        rec = wfdb.rdrecord(str(base), smooth_frames=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{base}: cannot read the WFDB record ({err}); expected {base}.hea and "
                         "its signal files") from err
    spf = rec.samps_per_frame or [1] * rec.n_sig
    waves = {}
    for i, name in enumerate(rec.sig_name):
        waves[name] = Waveform(name=name, samples=np.asarray(rec.e_p_signal[i], dtype=float),
                               fs_hz=float(rec.fs) * spf[i], unit=str(rec.units[i]))
    start = None  # a start time without a date cannot place the samples in time
    if rec.base_time is not None and rec.base_date is not None:
        start = datetime.combine(rec.base_date, rec.base_time)
    return WaveformRecord(name=rec.record_name, waveforms=waves, base_time=start)


def read_wfdb(path: str | Path, *, subject: str, start_time: datetime | None = None,
              default_timezone: tzinfo | None = None) -> Batch:
    """Per-beat vitals of a WFDB record as observations.

    Parameters
    ----------
    path : str or Path
        The record (name without ``.hea``).
    subject : str
        The twin's pseudonym (WFDB records carry none).
    start_time : datetime, optional
        Timezone-aware time of the first sample; overrides the header's.
    default_timezone : tzinfo, optional
        Zone of the header's start time (WFDB stores it without one).

    Returns
    -------
    Batch
        Heart rate per R-R interval of the first ECG lead and per-beat pressures and pulse rate
        of the first arterial pressure channel; rejections name the record, channel and beat.

    Raises
    ------
    InputError
        No ECG or arterial pressure channel, or no usable start time.
    """
    rec = load_record(path)
    label = f"wfdb:{rec.name}"
    if start_time is None:
        if rec.base_time is None:
            raise InputError(f"{label}: the header has no start date and time; give start_time= "
                             "(timezone-aware, the time of the first sample)")
        if default_timezone is None:
            raise InputError(f"{label}: the header's start {rec.base_time.isoformat()} has no "
                             "timezone; give default_timezone= (where it was recorded) or "
                             "start_time=")
        start_time = rec.base_time.replace(tzinfo=default_timezone)
    try:
        t0 = utc_time(start_time, record=label, field="start_time")
    except ObservationError as err:
        raise InputError(str(err)) from err
    ecg, abp = rec.ecg(), rec.pressure()
    if not ecg and not abp:
        names = {w.name: w.unit for w in rec.waveforms.values()}
        raise InputError(f"{label}: no ECG (mV, lead name) or arterial pressure (mmHg, ABP/ART) "
                         f"channel among {names}")
    rejections: list[Rejection] = []
    observations = []

    def at(sample: int, fs_hz: float) -> datetime:
        return t0 + timedelta(seconds=float(sample) / fs_hz)

    if ecg:
        w = ecg[0]
        peaks = detect_r_peaks(w.samples, w.fs_hz)
        device = f"{rec.name}:{w.name}"
        for k in range(1, peaks.size):
            bpm = 60.0 * w.fs_hz / float(peaks[k] - peaks[k - 1])
            obs = make_observation(rejections, subject=subject, time=at(peaks[k], w.fs_hz),
                                   code="8867-4", value_as_received=bpm, unit="/min",
                                   source=label, device=device, record=f"{w.name} beat {k}")
            if obs is not None:
                observations.append(obs)
    if abp:
        w = abp[0]
        beats = detect_pressure_beats(w.samples, w.fs_hz)
        device = f"{rec.name}:{w.name}"
        for k in range(len(beats)):
            t = at(int(beats.foot[k]), w.fs_hz)
            for code, value, unit in (("8480-6", beats.systolic[k], "mm[Hg]"),
                                      ("8462-4", beats.diastolic[k], "mm[Hg]"),
                                      ("8478-0", beats.mean[k], "mm[Hg]"),
                                      ("8867-4", beats.heart_rate_bpm[k], "/min")):
                obs = make_observation(rejections, subject=subject, time=t, code=code,
                                       value_as_received=float(value), unit=unit,
                                       source=label, device=device,
                                       record=f"{w.name} beat {k + 1}")
                if obs is not None:
                    observations.append(obs)
    logger.info("%s: %d observations from %s", label, len(observations),
                [w.name for w in ecg[:1] + abp[:1]])
    return Batch(tuple(observations), tuple(rejections))
