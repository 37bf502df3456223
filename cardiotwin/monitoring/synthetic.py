"""A small synthetic bedside record (ECG lead II and arterial pressure) written as WFDB.

``make demo`` cannot ship PhysioNet data (``../shared/data`` is not part of the repository), so
it writes a record of a few kilobytes at run time and replays it into the twin. The waveforms are
made for this project: each beat is a sum of Gaussians for P, Q, R, S and T (after the dynamical
ECG model of McSharry et al., IEEE TBME 50:289, 2003, without its ODE), and the arterial pressure
rises as a half sine from the diastolic to the systolic value 0.15 s after the R peak and
decays exponentially with a small dicrotic wave. R-R intervals vary by a seeded 3 %. The record
is read back by :func:`~.wfdb_records.read_wfdb` like any PhysioNet record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cardiotwin.errors import InputError

__all__ = ["SyntheticVitals", "write_vitals_record"]

# (offset from the R peak s, amplitude mV, width s) of P, Q, R, S, T
_ECG_WAVES = ((-0.20, 0.15, 0.025), (-0.03, -0.12, 0.008), (0.0, 1.2, 0.010),
              (0.03, -0.25, 0.008), (0.30, 0.30, 0.050))
_PRESSURE_DELAY_S = 0.15   # R peak to the foot of the pressure wave
_UPSTROKE_S = 0.12         # foot to systolic peak
_DECAY_S = 0.30            # exponential decay constant after the peak


@dataclass(frozen=True)
class SyntheticVitals:
    """The vitals a synthetic record was made with (what the detectors should find).

    Attributes
    ----------
    record : Path
        The record's path without extension (``.hea`` and ``.dat`` beside it).
    seconds : float
        Duration, s.
    heart_rate_bpm, systolic_mmhg, diastolic_mmhg : float
        Mean heart rate and the pressures of every beat.
    beats : int
        R peaks in the record.
    """

    record: Path
    seconds: float
    heart_rate_bpm: float
    systolic_mmhg: float
    diastolic_mmhg: float
    beats: int


def write_vitals_record(folder: str | Path, *, name: str = "bedside", seconds: float = 20.0,
                        fs_hz: int = 250, heart_rate_bpm: float = 72.0,
                        systolic_mmhg: float = 128.0, diastolic_mmhg: float = 78.0,
                        seed: int = 0) -> SyntheticVitals:
    """Write a WFDB record with an ECG lead II (mV) and an arterial pressure (``ABP``, mmHg).

    Parameters
    ----------
    folder : str or Path
        Where ``<name>.hea`` and ``<name>.dat`` are written (created if missing).
    name : str
        Record name.
    seconds : float
        Duration, s (2-600).
    fs_hz : int
        Sampling rate of both signals, Hz.
    heart_rate_bpm : float
        Mean heart rate, beats/min (30-200).
    systolic_mmhg, diastolic_mmhg : float
        Pressure at each beat's peak and foot, mmHg.
    seed : int
        Seed of the R-R variability and the noise.

    Returns
    -------
    SyntheticVitals

    Raises
    ------
    InputError
        A duration, rate or pressure outside the ranges above.
    """
    import wfdb

    if not 2.0 <= seconds <= 600.0:
        raise InputError(f"seconds {seconds!r}: expected 2-600 s")
    if not 30.0 <= heart_rate_bpm <= 200.0:
        raise InputError(f"heart_rate_bpm {heart_rate_bpm!r}: expected 30-200 /min")
    if not 0.0 < diastolic_mmhg < systolic_mmhg <= 300.0:
        raise InputError(f"pressures {systolic_mmhg!r}/{diastolic_mmhg!r} mmHg: expected "
                         "0 < diastolic < systolic <= 300")
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs_hz))
    t = np.arange(n) / fs_hz
    rr = 60.0 / heart_rate_bpm
    peaks = []
    tp = 0.4
    while tp < seconds - 0.5:
        peaks.append(tp)
        tp += rr * (1.0 + 0.03 * rng.standard_normal())
    ecg = 0.02 * rng.standard_normal(n)
    pressure = np.full(n, float(diastolic_mmhg))
    pulse = systolic_mmhg - diastolic_mmhg
    for k, r in enumerate(peaks):
        for offset, amp, width in _ECG_WAVES:
            ecg += amp * np.exp(-0.5 * ((t - r - offset) / width) ** 2)
        foot = r + _PRESSURE_DELAY_S
        end = peaks[k + 1] + _PRESSURE_DELAY_S if k + 1 < len(peaks) else seconds
        s = (t >= foot) & (t < end)
        u = t[s] - foot
        rise = np.sin(0.5 * np.pi * np.clip(u / _UPSTROKE_S, 0.0, 1.0)) ** 2
        decay = np.where(u < _UPSTROKE_S, 1.0, np.exp(-(u - _UPSTROKE_S) / _DECAY_S))
        dicrotic = 0.08 * np.exp(-0.5 * ((u - 0.35) / 0.03) ** 2)
        pressure[s] = diastolic_mmhg + pulse * (rise * decay + dicrotic)
    pressure += 0.3 * rng.standard_normal(n)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs_hz, units=["mV", "mmHg"], sig_name=["II", "ABP"],
                p_signal=np.column_stack([ecg, pressure]), fmt=["16", "16"],
                adc_gain=[1000.0, 50.0], baseline=[0, 0], write_dir=str(folder))
    return SyntheticVitals(record=folder / name, seconds=float(seconds),
                           heart_rate_bpm=float(heart_rate_bpm),
                           systolic_mmhg=float(systolic_mmhg),
                           diastolic_mmhg=float(diastolic_mmhg), beats=len(peaks))
