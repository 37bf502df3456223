"""The unscented Kalman filter of the twin's physiology (twin.assimilate) on synthetic vitals.

Observations are generated from known parameters through the filter's own observation model
with seeded Gaussian noise of the documented size (MEASUREMENT_NOISE), one set of vitals a
minute: heart rate, systolic, diastolic and mean pressure, cardiac output.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cardiotwin import units
from cardiotwin.monitoring import Observation
from cardiotwin.twin import assimilate as A
from cardiotwin.twin.state import PatientTwin, Physiology

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
_AS_RECEIVED = {"8867-4": ("/min", units.hz_to_bpm), "8480-6": ("mm[Hg]", units.pa_to_mmhg),
                "8462-4": ("mm[Hg]", units.pa_to_mmhg), "8478-0": ("mm[Hg]", units.pa_to_mmhg),
                "8741-1": ("L/min", units.m3_s_to_l_min)}
#: the truth: resistance +22 %, compliance −22 %, period −10 %, stroke volume +16 % from the prior
OFFSET = np.array([0.2, -0.25, -0.1, 0.15])


def _twin(**extra) -> PatientTwin:
    return PatientTwin(pseudonym="tw-1", physiology=Physiology(
        heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75),
        **extra)


def synthetic(truth, fraction, *, minutes: int, seed: int, start=T0, subject="tw-1"):
    """Vitals a minute for ``minutes`` minutes from parameters ``truth`` with seeded noise."""
    rng = np.random.default_rng(seed)
    clean = A.predict_vitals(truth, fraction)
    out = []
    for i in range(minutes):
        t = start + timedelta(minutes=i)
        for code, (unit, to_unit) in _AS_RECEIVED.items():
            y = clean[code] + A.MEASUREMENT_NOISE[code].sd(clean[code]) * rng.standard_normal()
            out.append(Observation(subject=subject, time=t, code=code,
                                   value_as_received=to_unit(y), unit=unit, source="synthetic",
                                   device="monitor-1", record=f"{i}/{code}"))
    return out


@pytest.fixture(scope="module")
def prior():
    return A.initial_state(_twin())


def test_prior_reproduces_the_build_physiology(prior):
    v = A.predict_vitals(prior.mean, prior.proximal_fraction)
    assert units.pa_to_mmhg(v["8480-6"]) == pytest.approx(130, abs=0.1)
    assert units.pa_to_mmhg(v["8462-4"]) == pytest.approx(75, abs=0.1)
    assert units.hz_to_bpm(v["8867-4"]) == pytest.approx(70)
    assert units.m3_s_to_l_min(v["8741-1"]) == pytest.approx(4.9)
    assert prior.time_utc is None and prior.n_observations == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_posterior_converges_to_the_truth_within_two_sigma(prior, seed):
    truth = np.array(prior.mean) + OFFSET
    state = A.assimilate(prior, synthetic(truth, prior.proximal_fraction, minutes=60, seed=seed))
    mean, cov = state.arrays()
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(mean - truth) <= 2 * sd), (mean - truth) / sd
    # closer than the prior for every parameter, with a third of its spread or less
    assert np.all(np.abs(mean - truth) < np.abs(OFFSET))
    assert np.all(sd < np.array(A.PRIOR_SD) / 3)
    assert state.n_observations == 300
    assert state.time == T0 + timedelta(minutes=59)


def test_the_posterior_spread_is_honest_over_many_seeds(prior):
    # 10 seeds x 4 parameters: the truth within 2 SD nearly always, within 1 SD about 2/3 of
    # the time (measured on 20 seeds: 100 % and 80-90 %)
    truth = np.array(prior.mean) + OFFSET
    z = []
    for seed in range(10, 20):
        state = A.assimilate(prior, synthetic(truth, prior.proximal_fraction, minutes=60,
                                              seed=seed))
        mean, cov = state.arrays()
        z.append((mean - truth) / np.sqrt(np.diag(cov)))
    z = np.abs(np.array(z))
    assert (z <= 2).mean() >= 0.9
    assert (z <= 1).mean() >= 0.6


def test_covariance_shrinks_with_data_and_widens_with_age(prior):
    truth = np.array(prior.mean) + OFFSET
    obs = synthetic(truth, prior.proximal_fraction, minutes=30, seed=4)
    traces = [np.trace(prior.arrays()[1])]
    state = prior
    for i in range(0, len(obs), 5):  # one minute of vitals per batch
        state = A.assimilate(state, obs[i:i + 5])
        traces.append(np.trace(state.arrays()[1]))
    assert traces[-1] < 0.05 * traces[0]
    assert all(b < a for a, b in zip(traces[:3], traces[1:4], strict=True))
    last = state.time
    sds = [A.status(state, as_of=last + timedelta(hours=h)).estimates["mean_bp"].sd
           for h in (0, 1, 4)]
    assert sds[0] < sds[1] < sds[2]
    assert A.status(state, as_of=last + timedelta(hours=1)).data_age_s == 3600
    # after years without data the spread is back to the prior's, not beyond
    rel = {k: e.sd / e.mean for k, e in A.status(prior, as_of=T0).estimates.items()}
    old = A.status(state, as_of=last + timedelta(days=3650)).estimates
    for name in ("resistance", "heart_rate", "stroke_volume"):
        assert old[name].sd / old[name].mean == pytest.approx(rel[name], rel=0.15)


def test_stale_after_fifteen_minutes_and_before_any_data(prior):
    est = A.status(prior, as_of=T0)
    assert est.stale and "no monitoring observation" in est.stale_reason
    truth = np.array(prior.mean)
    state = A.assimilate(prior, synthetic(truth, prior.proximal_fraction, minutes=2, seed=5))
    last = state.time
    assert not A.status(state, as_of=last + timedelta(minutes=14)).stale
    late = A.status(state, as_of=last + timedelta(minutes=16))
    assert late.stale and "16 min old" in late.stale_reason


def test_drift_when_the_pressure_moves_away_from_the_last_3d_run(prior):
    same = A.assimilate(prior, synthetic(np.array(prior.mean), prior.proximal_fraction,
                                         minutes=20, seed=6))
    est = A.status(same, as_of=same.time)
    assert not est.drift and est.drift_reasons == ()
    hyper = np.array(prior.mean) + np.array([0.3, 0.0, 0.0, 0.0])  # resistance +35 %
    moved = A.assimilate(prior, synthetic(hyper, prior.proximal_fraction, minutes=20, seed=6))
    est = A.status(moved, as_of=moved.time)
    assert est.drift
    assert "mean arterial pressure" in est.drift_reasons[0]
    assert est.estimates["mean_bp"].mean > prior.reference.map_mmhg + A.DRIFT_MAP_MMHG


def test_drift_of_the_valve_gradient_through_the_reduced_law():
    # a twin with a stored 3-D baseline run: gradient 40 mmHg at 250 mL/s mean systolic flow
    twin = _twin(results=[{"label": "baseline", "summary": {
        "label": "baseline", "peak_gradient_mmhg": 40.0, "inflow_ml_s": 250.0}}])
    prior = A.initial_state(twin)
    assert prior.reference.gradient_mmhg is not None
    q0 = units.m3_to_ml(math.exp(prior.mean[3])) / 0.294  # SV / LVET(70 bpm)
    assert prior.reference.gradient_mmhg == pytest.approx(40.0 * (q0 / 250.0) ** 2, rel=1e-3)
    more_flow = np.array(prior.mean) + np.array([-0.25, 0.0, 0.0, 0.25])  # SV +28 %, MAP same
    state = A.assimilate(prior, synthetic(more_flow, prior.proximal_fraction, minutes=20, seed=7))
    est = A.status(state, twin, as_of=state.time)
    assert est.drift
    assert any("valve gradient" in r for r in est.drift_reasons)
    assert not any("mean arterial" in r for r in est.drift_reasons)
    # without a 3-D run: ΔP = 4 v² through the valve orifice area
    twin2 = _twin(anatomy={"landmarks": {"valve_orifice_area_mm2": 80.0}})
    ref = A.initial_state(twin2).reference
    v = units.ml_to_m3(q0) / 80e-6
    assert ref.gradient_mmhg == pytest.approx(4 * v * v, rel=1e-3)


def test_outlets_split_the_posterior_load_by_murray_shares(prior):
    twin = _twin(mesh={"caps": [{"name": "inlet", "area_mm2": 490.0},
                                {"name": "outlet:descending", "area_mm2": 310.0},
                                {"name": "outlet:brachiocephalic", "area_mm2": 95.0}]})
    est = A.status(prior, twin, as_of=T0)
    r = math.exp(prior.mean[0])
    outlets = est.outlets
    assert set(outlets) == {"outlet:descending", "outlet:brachiocephalic"}
    parallel = 1.0 / sum(1.0 / (o["Rp"] + o["Rd"]) for o in outlets.values())
    assert parallel == pytest.approx(r, rel=1e-12)
    assert sum(o["C"] for o in outlets.values()) == pytest.approx(math.exp(prior.mean[1]))


def test_bit_for_bit_reproducible_and_json_exact(prior):
    truth = np.array(prior.mean) + OFFSET
    obs = synthetic(truth, prior.proximal_fraction, minutes=10, seed=8)
    a = A.assimilate(prior, obs)
    b = A.assimilate(prior, list(reversed(obs)))  # order given does not matter: time order
    assert a.to_dict() == b.to_dict()
    again = A.AssimilationState.from_dict(__import__("json").loads(
        __import__("json").dumps(a.to_dict())))
    assert again == a
    assert np.array_equal(again.arrays()[1], a.arrays()[1])


def test_codes_the_model_does_not_read_are_skipped(prior):
    spo2 = Observation(subject="tw-1", time=T0, code="59408-5", value_as_received=97, unit="%",
                       source="s")
    assert A.assimilate(prior, [spo2]) is prior
