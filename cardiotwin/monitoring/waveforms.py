"""Beat detection on monitoring waveforms: R peaks on the ECG, beats on arterial pressure.

Both are pure functions from a 1-D signal and its sampling rate to sample indices and per-beat
values; they do not change the signal they are given.

* :func:`detect_r_peaks`: a detector after Pan & Tompkins (1985): a 5-15 Hz band-pass, the
  derivative, squaring, a 150 ms moving-window integral, then peaks of the integral classified
  by adaptive signal and noise levels with a 200 ms refractory period, T-wave rejection by slope,
  and a search back at half the threshold when no beat came for 1.66 average RR intervals. The R
  peak is placed at the largest excursion of the band-passed ECG near the integral's peak.
* :func:`detect_pressure_beats`: systolic peaks of the low-passed arterial pressure, the foot of
  each beat at the minimum before its upstroke, and per beat (foot to next foot) the systolic,
  diastolic and mean pressure of the *unfiltered* signal and the heart rate.

Reference: J. Pan, W. J. Tompkins, "A real-time QRS detection algorithm", IEEE Trans. Biomed.
Eng. 32(3):230-236, 1985. Measured agreement with the MIT-BIH cardiologist annotations is in
``docs/monitoring.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import signal

from cardiotwin.errors import InputError

logger = logging.getLogger(__name__)


def _check(x: np.ndarray, fs_hz: float, what: str, *, min_seconds: float = 2.0) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise InputError(f"{what}: expected a 1-D signal, got shape {x.shape}")
    if not np.isfinite(fs_hz) or fs_hz < 50.0:
        raise InputError(f"{what}: sampling rate {fs_hz!r} Hz is too low for beat detection; "
                         "expected at least 50 Hz")
    if x.size < min_seconds * fs_hz:
        raise InputError(f"{what}: {x.size / fs_hz:.2f} s of signal is too short; expected at "
                         f"least {min_seconds:g} s")
    finite = np.isfinite(x)
    if not finite.all():
        if finite.sum() < 0.5 * x.size:
            raise InputError(f"{what}: {100 * (1 - finite.mean()):.0f} % of the samples are "
                             "missing (NaN); expected a mostly complete signal")
        idx = np.arange(x.size)
        x = np.interp(idx, idx[finite], x[finite])  # a working copy for the filters only
    return x


def _bandpass(x: np.ndarray, fs_hz: float, lo_hz: float | None, hi_hz: float) -> np.ndarray:
    nyq = 0.5 * fs_hz
    hi = min(hi_hz, 0.9 * nyq)
    if lo_hz is None:
        sos = signal.butter(2, hi / nyq, btype="lowpass", output="sos")
    else:
        sos = signal.butter(2, [lo_hz / nyq, hi / nyq], btype="bandpass", output="sos")
    return signal.sosfiltfilt(sos, x)


def detect_r_peaks(ecg: np.ndarray, fs_hz: float, *, band_hz: tuple[float, float] = (5.0, 15.0),
                   window_s: float = 0.150, refractory_s: float = 0.200,
                   t_wave_s: float = 0.360, learn_s: float = 2.0) -> np.ndarray:
    """Sample indices of the R peaks of an ECG lead.

    Parameters
    ----------
    ecg : ndarray
        One ECG lead (any amplitude unit; mV in WFDB records). Missing samples (NaN) are
        bridged for the filters.
    fs_hz : float
        Sampling rate, Hz (at least 50).
    band_hz : tuple of float
        Pass band of the QRS filter, Hz (Pan & Tompkins: about 5-15 Hz).
    window_s : float
        Moving-integration window, s (150 ms at any rate in Pan & Tompkins).
    refractory_s : float
        No two beats closer than this, s.
    t_wave_s : float
        A candidate within this time of the last beat whose steepest slope is under half the
        last beat's is taken for a T wave, s.
    learn_s : float
        Length of the learning phase that initialises the signal and noise levels, s.

    Returns
    -------
    ndarray of int
        Increasing sample indices of the R peaks.

    Raises
    ------
    InputError
        The signal is not 1-D, too short, mostly missing, or sampled below 50 Hz.
    """
    x = _check(ecg, fs_hz, "ECG")
    bp = _bandpass(x, fs_hz, band_hz[0], band_hz[1])
    slope = np.gradient(bp) * fs_hz
    n_win = max(1, round(window_s * fs_hz))
    mwi = np.convolve(slope**2, np.ones(n_win) / n_win, mode="same")
    refractory = round(refractory_s * fs_hz)
    cands, _ = signal.find_peaks(mwi, distance=refractory)
    if cands.size == 0:
        return np.zeros(0, dtype=int)
    half = n_win
    # steepest slope near each candidate, for the T-wave test
    cand_slope = np.array([np.abs(slope[max(0, c - half):c + half + 1]).max() for c in cands])

    learn = mwi[: max(n_win, round(learn_s * fs_hz))]
    spk = 0.25 * learn.max()   # running signal level
    npk = 0.5 * learn.mean()   # running noise level
    beats: list[int] = []      # indices into cands
    rr: list[int] = []         # last 8 RR intervals, samples

    def threshold() -> float:
        return npk + 0.25 * (spk - npk)

    i = 0
    while i < cands.size:
        c = cands[i]
        peak = mwi[c]
        is_beat = peak > threshold()
        if is_beat and beats:
            gap = c - cands[beats[-1]]
            if gap < refractory:
                is_beat = False
            elif gap < t_wave_s * fs_hz and cand_slope[i] < 0.5 * cand_slope[beats[-1]]:
                is_beat = False  # a T wave
        if is_beat:
            spk = 0.125 * peak + 0.875 * spk
            if beats:
                rr = (rr + [c - cands[beats[-1]]])[-8:]
            beats.append(i)
        else:
            npk = 0.125 * peak + 0.875 * npk
        # search back: no beat for 1.66 mean RR -> take the largest missed candidate above half
        # the threshold
        if beats and len(rr) >= 2 and i + 1 < cands.size:
            limit = 1.66 * float(np.mean(rr))
            last = cands[beats[-1]]
            if cands[i + 1] - last > limit:
                window = [j for j in range(beats[-1] + 1, i + 1)
                          if cands[j] - last >= refractory and mwi[cands[j]] > 0.5 * threshold()]
                if window:
                    j = max(window, key=lambda k: mwi[cands[k]])
                    spk = 0.25 * mwi[cands[j]] + 0.75 * spk
                    rr = (rr + [cands[j] - last])[-8:]
                    beats.append(j)
                    i = j + 1
                    continue
        i += 1

    # place each R peak at the largest band-passed excursion within the integration window
    peaks = []
    for b in beats:
        c = cands[b]
        lo, hi = max(0, c - n_win), min(x.size, c + n_win + 1)
        seg = bp[lo:hi]
        peaks.append(lo + int(np.argmax(np.abs(seg))))
    out = np.unique(np.asarray(peaks, dtype=int))
    if out.size > 1:  # two candidates can land on the same QRS: keep one within the refractory
        keep = np.concatenate(([True], np.diff(out) >= refractory))
        out = out[keep]
    logger.debug("R peaks: %d in %.1f s", out.size, x.size / fs_hz)
    return out


@dataclass(frozen=True)
class PressureBeats:
    """Beats found on an arterial pressure waveform; arrays have one entry per beat.

    Attributes
    ----------
    foot : ndarray of int
        Sample index of the beat's foot (the diastolic minimum it starts from).
    systolic_index : ndarray of int
        Sample index of the systolic peak.
    systolic : ndarray
        Systolic pressure, in the signal's unit (mmHg in WFDB records).
    diastolic : ndarray
        Diastolic pressure (the foot's value).
    mean : ndarray
        Mean pressure over the beat (foot to next foot).
    heart_rate_bpm : ndarray
        60 / beat duration, beats per minute.
    fs_hz : float
        Sampling rate, Hz.
    """

    foot: np.ndarray
    systolic_index: np.ndarray
    systolic: np.ndarray
    diastolic: np.ndarray
    mean: np.ndarray
    heart_rate_bpm: np.ndarray
    fs_hz: float

    def __len__(self) -> int:
        return int(self.foot.size)

    @property
    def pulse_pressure(self) -> np.ndarray:
        """Systolic minus diastolic pressure per beat."""
        return self.systolic - self.diastolic


def detect_pressure_beats(pressure: np.ndarray, fs_hz: float, *, lowpass_hz: float = 10.0,
                          max_rate_bpm: float = 220.0, min_pulse: float = 5.0) -> PressureBeats:
    """Per-beat systolic, diastolic and mean pressure and heart rate of an arterial waveform.

    Parameters
    ----------
    pressure : ndarray
        Arterial pressure (mmHg in WFDB records). Beats that contain missing samples are not
        reported.
    fs_hz : float
        Sampling rate, Hz (at least 50).
    lowpass_hz : float
        Cut-off of the low-pass used to find the peaks and feet (values come from the raw
        signal), Hz.
    max_rate_bpm : float
        Highest heart rate looked for; sets the least distance between systolic peaks.
    min_pulse : float
        Least rise from foot to peak of a beat, in the signal's unit; also at least a third of
        the median pulse of the record.

    Returns
    -------
    PressureBeats
        One entry per complete beat (from a foot to the next foot).

    Raises
    ------
    InputError
        The signal is not 1-D, too short, mostly missing, or sampled below 50 Hz.
    """
    raw = np.asarray(pressure, dtype=float)
    x = _check(raw, fs_hz, "arterial pressure")
    lp = _bandpass(x, fs_hz, None, lowpass_hz)
    distance = max(1, int(60.0 / max_rate_bpm * fs_hz))
    peaks, props = signal.find_peaks(lp, distance=distance, prominence=min_pulse)
    if peaks.size >= 3:
        floor = max(min_pulse, np.median(props["prominences"]) / 3.0)
        peaks = peaks[props["prominences"] >= floor]
    feet = []
    for a, b in zip(peaks[:-1], peaks[1:], strict=True):
        feet.append(a + int(np.argmin(lp[a:b])))
    feet = np.asarray(feet, dtype=int)
    rows = []
    for f0, f1 in zip(feet[:-1], feet[1:], strict=True):
        seg = raw[f0:f1]
        if seg.size < 2 or not np.isfinite(seg).all():
            continue
        k = int(np.argmax(seg))
        rows.append((f0, f0 + k, seg[k], raw[f0], seg.mean(), 60.0 * fs_hz / (f1 - f0)))
    if not rows:
        empty = np.zeros(0)
        return PressureBeats(empty.astype(int), empty.astype(int), empty, empty, empty, empty,
                             float(fs_hz))
    a = np.asarray(rows, dtype=float)
    return PressureBeats(foot=a[:, 0].astype(int), systolic_index=a[:, 1].astype(int),
                         systolic=a[:, 2], diastolic=a[:, 3], mean=a[:, 4],
                         heart_rate_bpm=a[:, 5], fs_hz=float(fs_hz))
