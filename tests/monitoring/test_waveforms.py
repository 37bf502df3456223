"""Beat detection on real PhysioNet records (../shared/data/physionet, via ``shared_data``).

Record 100 of the MIT-BIH Arrhythmia Database is scored against its cardiologist annotations
(``100.atr``) with ``wfdb.processing.compare_annotations`` at a 150 ms window, beside the
established XQRS detector of the ``wfdb`` package; the ABP channel of ``mixedsignals`` must give
plausible per-beat pressures whose rate agrees with the record's own ECG.
"""

from datetime import UTC, datetime

import numpy as np
import pytest

from cardiotwin.errors import InputError
from cardiotwin.monitoring import (
    Screen,
    detect_pressure_beats,
    detect_r_peaks,
    load_record,
    read_wfdb,
)

# MIT-BIH beat annotation codes (PhysioNet "Table of annotation codes"); 100.atr also holds a
# rhythm annotation '+', which is not a beat
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


@pytest.fixture(scope="module")
def physionet(shared_data):
    return shared_data / "physionet"


def test_record_100_r_peaks_against_the_cardiologists_and_xqrs(physionet):
    import wfdb
    from wfdb import processing

    rec = wfdb.rdrecord(str(physionet / "100"), channels=[0])  # MLII
    ann = wfdb.rdann(str(physionet / "100"), "atr")
    ref = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True)
                    if sym in BEAT_SYMBOLS])
    assert ref.size == 2273
    ecg, fs = rec.p_signal[:, 0], rec.fs
    window = int(0.150 * fs)

    ours = processing.compare_annotations(ref, detect_r_peaks(ecg, fs), window)
    xqrs = processing.compare_annotations(
        ref, processing.xqrs_detect(ecg, fs=fs, verbose=False), window)
    # measured 2026-12: both 2273 of 2273 beats, 0 FN, 0 FP (Se = +P = 100.00 %), median R-peak
    # offset 0 ms, 95th percentile 2.8 ms; ours 0.3 s, XQRS 6.6 s for the 30 min lead
    assert ours.sensitivity >= 0.99 and ours.positive_predictivity >= 0.99
    assert xqrs.sensitivity >= 0.99 and xqrs.positive_predictivity >= 0.99
    # no worse than the established detector by more than 0.5 %
    assert ours.sensitivity >= xqrs.sensitivity - 0.005
    assert ours.positive_predictivity >= xqrs.positive_predictivity - 0.005


def test_mixedsignals_abp_gives_plausible_beats_agreeing_with_its_ecg(physionet):
    rec = load_record(physionet / "mixedsignals")
    (abp,) = rec.pressure()
    assert abp.name == "ABP" and abp.unit == "mmHg" and abp.fs_hz == pytest.approx(124.945)
    beats = detect_pressure_beats(abp.samples, abp.fs_hz)
    assert 370 <= len(beats) <= 400  # 230 s at about 104 /min, some ectopics without a pulse
    # plausible adult arterial pressures (the record's ABP spans about 79-162 mmHg, 1st-99th pct)
    assert np.all((beats.systolic > 100) & (beats.systolic < 200))
    assert np.all((beats.diastolic > 50) & (beats.diastolic < 110))
    assert np.all((beats.diastolic < beats.mean) & (beats.mean < beats.systolic))
    assert np.all((beats.heart_rate_bpm > 40) & (beats.heart_rate_bpm < 180))
    assert np.median(beats.pulse_pressure) == pytest.approx(70.0, abs=15.0)

    # the record has no beat annotations: compare with its own ECG (lead II) instead
    ecg = rec.ecg()[0]
    r = detect_r_peaks(ecg.samples, ecg.fs_hz) / ecg.fs_hz
    ecg_rate = 60.0 / np.median(np.diff(r))
    assert np.median(beats.heart_rate_bpm) == pytest.approx(ecg_rate, abs=2.0)
    # every pressure upstroke follows an R peak by a plausible delay (R to foot, < 0.4 s)
    foot_s = beats.foot / abp.fs_hz
    delay = foot_s - r[np.searchsorted(r, foot_s) - 1]
    assert np.mean((delay > 0.0) & (delay < 0.4)) >= 0.98


def test_read_wfdb_gives_per_beat_observations_that_pass_the_checks(physionet):
    with pytest.raises(InputError, match=r"wfdb:mixedsignals: the header has no start date"):
        read_wfdb(physionet / "mixedsignals", subject="tw-1")
    batch = read_wfdb(physionet / "mixedsignals", subject="tw-1",
                      start_time=datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    codes = [o.code for o in batch.observations]
    assert {"8867-4", "8480-6", "8462-4", "8478-0"} == set(codes)
    assert {o.device for o in batch.observations} == {"mixedsignals:II", "mixedsignals:ABP"}
    s = Screen()
    accepted = s.offer_batch(batch)
    assert len(accepted) == len(batch.observations) and len(s.quarantine) == 0
    sbp = [o for o in accepted if o.code == "8480-6"]
    assert sbp[0].time > datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert sbp[0].record == "ABP beat 1" and sbp[0].unit == "mm[Hg]"


def test_bad_waveforms_are_refused_with_what_was_expected():
    with pytest.raises(InputError, match=r"ECG: sampling rate 10 Hz is too low.*at least 50 Hz"):
        detect_r_peaks(np.zeros(1000), 10)
    with pytest.raises(InputError, match=r"ECG: 1.00 s of signal is too short; expected at least"):
        detect_r_peaks(np.zeros(360), 360)
    with pytest.raises(InputError, match=r"arterial pressure: expected a 1-D signal"):
        detect_pressure_beats(np.zeros((2, 1000)), 125)
    x = np.full(1000, np.nan)
    with pytest.raises(InputError, match=r"100 % of the samples are missing"):
        detect_pressure_beats(x, 125)


def test_synthetic_pressure_beats_are_exact():
    # 75 /min: a quarter-sine upstroke from 80 to 120 mmHg in 150 ms, then an exponential
    # (Windkessel-like, tau 250 ms) decay back to 80 mmHg at the next foot, every 0.8 s
    fs, period, rise, tau = 250.0, 0.8, 0.15, 0.25
    tt = np.arange(0, 20, 1 / fs)
    tau_b = np.round(tt * fs).astype(int) % int(period * fs) / fs  # time within the beat
    end = np.exp(-(period - rise) / tau)
    decay = (np.exp(-(tau_b - rise) / tau) - end) / (1 - end)
    p = 80 + 40 * np.where(tau_b < rise, np.sin(0.5 * np.pi * tau_b / rise), decay)
    beats = detect_pressure_beats(p, fs)
    assert len(beats) >= 20
    one = p[: int(period * fs)]
    np.testing.assert_allclose(beats.heart_rate_bpm, 75.0, atol=0.5)
    np.testing.assert_allclose(beats.systolic, 120.0, atol=0.05)
    np.testing.assert_allclose(beats.diastolic, 80.0, atol=0.5)
    np.testing.assert_allclose(beats.mean, one.mean(), atol=0.5)
