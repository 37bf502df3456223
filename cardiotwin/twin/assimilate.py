"""Assimilation of monitoring observations: an unscented Kalman filter on the twin's 0-D physiology.

The state is four positive parameters of the lumped circulation, kept in **log space** so they
stay positive whatever the update does (:data:`PARAMETERS`):

=====================  ==================================================================
``log_R``              total peripheral resistance ``R = Rp + Rd`` of the systemic load, Pa·s/m³
``log_C``              total arterial compliance ``C``, m³/Pa
``log_T``              heart period ``T = 60/HR``, s
``log_SV``             stroke volume, m³
=====================  ==================================================================

The per-outlet three-element Windkessels follow from the totals by the split rules of
:mod:`cardiotwin.twin.calibrate` (proximal fraction ``f`` of the twin's own fit kept fixed:
``Rp = f·R``, ``Rd = (1 − f)·R``; outlet ``i`` with Murray share ``w_i`` gets ``R/w_i`` and
``C·w_i``; :func:`cardiotwin.twin.calibrate.split_total`).

**Observation model** (:func:`predict_vitals`): the aortic flow of one beat
(:class:`~cardiotwin.physics.waveforms.AorticFlowWaveform`: heart rate ``60/T``, stroke volume
``SV``, ejection time from the heart rate, Weissler 1968) drives the total RCR load; its periodic
pressure (:func:`cardiotwin.twin.calibrate.periodic_pressure`, exact in the frequency domain)
gives the systolic (maximum) and diastolic (minimum) pressure, and its mean ``R·SV/T`` the mean
arterial pressure. Heart rate is ``1/T``, cardiac output ``SV/T``, stroke volume ``SV``. SpO₂ and
respiratory rate are accepted and stored but not assimilated (the model has no such state).

**Filter.** Scaled unscented transform (Wan & van der Merwe 2000) with ``α = 1``, ``β = 2``,
``κ = 0``: ``2n`` sigma points at ``x ± √n·L`` columns (``P = L·Lᵀ``), mean weight 0, covariance
weight 2 for the centre. Each observation is one scalar update, in time order; between two
observations the parameters follow a random walk in log space, ``P ← P + Q·Δt``
(:data:`PROCESS_NOISE_PER_HOUR`), so confidence widens with the time since the last accepted
observation, up to the prior spread (after a long gap the twin is as uncertain as at its build). The measurement noise per LOINC code is :data:`MEASUREMENT_NOISE` (sources there).

**Data age, stale, drift.** :func:`status` widens the covariance to the time asked about and
calls the twin **stale** when its last accepted observation is older than
:data:`STALE_AFTER_S` (15 min), or when it has none. **Drift** compares the predicted mean
arterial pressure and the valve gradient at mean systolic flow with the same metrics at the twin's
last 3-D run (its build physiology): beyond :data:`DRIFT_MAP_MMHG` or
:data:`DRIFT_GRADIENT_FRACTION` the twin asks for a new 3-D run. The gradient follows the reduced
valve law: the stored baseline run's gradient scaled by ``(Q/Q_3D)²`` (``ΔP = b·Q²``), or without
a run, ``ΔP = 4·v²`` (mmHg, ``v`` in m/s) with ``v = Q/EOA`` from the measured valve orifice area.

Everything here is a pure function of the prior (the twin's build physiology) and the
observations, in the order given: no clock, no randomness, so a replay from the stored
observations gives the same state bit for bit.

References
----------
Julier SJ, Uhlmann JK. Unscented filtering and nonlinear estimation. Proc IEEE 2004;92:401–422.
Wan EA, van der Merwe R. The unscented Kalman filter for nonlinear estimation. IEEE AS-SPCC 2000.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.monitoring.observations import Observation
from cardiotwin.physics.waveforms import AorticFlowWaveform, lvet_s
from cardiotwin.twin.calibrate import fit_total_load, murray_shares, periodic_pressure, split_total
from cardiotwin.twin.state import PatientTwin, Physiology

log = logging.getLogger(__name__)

__all__ = [
    "ASSIMILATION_KEY", "DRIFT_GRADIENT_FRACTION", "DRIFT_GRADIENT_MIN_MMHG", "DRIFT_MAP_MMHG",
    "MEASUREMENT_NOISE", "PARAMETERS", "PRIOR_SD", "PROCESS_NOISE_PER_HOUR", "STALE_AFTER_S",
    "AssimilationState", "Estimate", "NoiseModel", "TwinEstimate", "assimilate",
    "initial_state", "observation_sha256", "predict_vitals", "status",
]

ASSIMILATION_KEY = "assimilation"
"""Key of the filter's state in ``PatientTwin.parameters``."""

PARAMETERS = ("log_R", "log_C", "log_T", "log_SV")
"""The filter's state, in this order (natural logs of SI values)."""

PRIOR_SD = (0.25, 0.35, 0.15, 0.25)
"""Prior standard deviation of each log parameter around the twin's build fit: ±25 % on the
resistance and stroke volume (a cuff pressure and an estimated stroke volume), ±35 % on the
compliance (from the pulse pressure, the least determined), ±15 % on the period."""

PROCESS_NOISE_PER_HOUR = (0.10, 0.10, 0.10, 0.10)
"""Random-walk standard deviation of each log parameter per hour (``Q = sd²/3600`` per s): in an
hour without data the spread of each parameter grows by about 10 % (added in quadrature)."""

STALE_AFTER_S = 15 * 60.0
"""A twin whose last accepted observation is older than this (15 min) is stale: intermittent
cuff readings in a monitored ward are taken every 5–15 min, so a longer gap means the twin no
longer follows the patient."""

DRIFT_MAP_MMHG = 10.0
"""Drift when the predicted mean arterial pressure moves this far from the last 3-D run: twice
the 5 mmHg mean-error limit of ISO 81060-2, so cuff error alone rarely raises it."""

DRIFT_GRADIENT_FRACTION = 0.20
"""Drift when the predicted valve gradient moves by this fraction from the last 3-D run (and by
at least :data:`DRIFT_GRADIENT_MIN_MMHG`); a project choice, about twice the test–retest
variability of Doppler mean gradients."""

DRIFT_GRADIENT_MIN_MMHG = 3.0
"""Smallest gradient change (mmHg) that counts as drift, so a tiny gradient cannot trip it."""


@dataclass(frozen=True)
class NoiseModel:
    """Measurement noise of one LOINC code: ``sd = max(absolute, relative·|y|)`` in SI, with
    ``y`` the predicted value (weighting by the observed value would favour low readings).

    Attributes
    ----------
    absolute : SD in the SI unit of the code (Pa, Hz, m³/s, m³).
    relative : SD as a fraction of the observed value.
    source : where the number comes from.
    """

    absolute: float
    relative: float
    source: str

    def sd(self, y: float) -> float:
        """The SD for an observed SI value ``y``."""
        return max(self.absolute, self.relative * abs(y))


_ISO = ("ISO 81060-2:2018 / AAMI SP10 validation limit for non-invasive sphygmomanometers: mean "
        "error ±5 mmHg with SD ≤ 8 mmHg; the SD 8 mmHg is used")

MEASUREMENT_NOISE: dict[str, NoiseModel] = {
    "8480-6": NoiseModel(units.mmhg_to_pa(8.0), 0.0, _ISO),
    "8462-4": NoiseModel(units.mmhg_to_pa(8.0), 0.0, _ISO),
    "8478-0": NoiseModel(units.mmhg_to_pa(8.0), 0.0, _ISO),
    "8867-4": NoiseModel(units.bpm_to_hz(5.0), 0.10,
                         "IEC 60601-2-27 heart-rate meter accuracy ±10 % or ±5 /min, whichever "
                         "is greater, taken as one SD"),
    "8741-1": NoiseModel(0.0, 0.10,
                         "thermodilution precision ±20 % (2 SD), Critchley & Critchley, "
                         "J Clin Monit Comput 1999;15:85–91"),
    "20562-5": NoiseModel(0.0, 0.10, "as cardiac output (SV = CO/HR from the same devices)"),
}
"""Measurement noise of the assimilated LOINC codes; other codes are stored, not assimilated."""

_N = len(PARAMETERS)
_Q_PER_S = np.array([s * s / 3600.0 for s in PROCESS_NOISE_PER_HOUR])
_PRIOR_VAR = np.square(PRIOR_SD)
_SAMPLES = 256  # samples of one beat for SBP/DBP: max/min within 0.02 mmHg of 8192 samples
_HR_LIMITS_BPM = (20.0, 240.0)
_SV_LIMITS_ML = (1.0, 290.0)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(t: str | None) -> datetime | None:
    return None if t is None else datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def observation_sha256(obs: Observation) -> str:
    """SHA-256 of what makes an observation itself (:attr:`Observation.key`: subject, code,
    device, time, SI value; not the source), so the same observation from two sources has one
    hash and is stored once."""
    subject, code, device, t, value = obs.key
    text = f"{subject}|{code}|{device}|{_iso(t)}|{value!r}"
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------- the model
def _vitals(x: np.ndarray, fraction: float, *, pressures: bool) -> dict[str, float]:
    """Predicted vitals (SI) for one state vector ``x`` (log R, log C, log T, log SV)."""
    r, c, period, sv = (math.exp(v) for v in x)
    hr_bpm = min(max(60.0 / period, _HR_LIMITS_BPM[0]), _HR_LIMITS_BPM[1])
    period = 60.0 / hr_bpm
    sv_ml = min(max(units.m3_to_ml(sv), _SV_LIMITS_ML[0]), _SV_LIMITS_ML[1])
    sv = units.ml_to_m3(sv_ml)
    out = {"8867-4": 1.0 / period, "8741-1": sv / period, "20562-5": sv,
           "8478-0": r * sv / period}
    if pressures:
        wave = AorticFlowWaveform(heart_rate_bpm=hr_bpm, stroke_volume_ml=sv_ml,
                                  ejection_time_s=lvet_s(hr_bpm))
        _, p = periodic_pressure(wave, r_total_pa_s_m3=r, c_total_m3_pa=c,
                                 proximal_fraction=fraction, samples=_SAMPLES)
        out["8480-6"] = float(p.max())
        out["8462-4"] = float(p.min())
    return out


def predict_vitals(x: Sequence[float], proximal_fraction: float) -> dict[str, float]:
    """The vitals the twin predicts for parameters ``x`` (:data:`PARAMETERS`), by LOINC code, in
    SI: heart rate (Hz), cardiac output (m³/s), stroke volume (m³), mean, systolic and diastolic
    pressure (Pa)."""
    return _vitals(np.asarray(x, dtype=float), proximal_fraction, pressures=True)


def _sigma_points(mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``2n + 1`` sigma points (rows): the mean, then ``mean ± √n·L[:, i]``."""
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:  # round-off made P indefinite: repair symmetrically
        w, v = np.linalg.eigh(0.5 * (cov + cov.T))
        chol = v @ np.diag(np.sqrt(np.clip(w, 1e-12, None)))
    spread = math.sqrt(_N) * chol.T
    return np.vstack([mean, mean + spread, mean - spread])


# weights for α = 1, β = 2, κ = 0 (λ = 0)
_WM = np.array([0.0] + [1.0 / (2 * _N)] * (2 * _N))
_WC = np.array([2.0] + [1.0 / (2 * _N)] * (2 * _N))


# ----------------------------------------------------------------------------- the state
@dataclass(frozen=True)
class Reference:
    """The metrics at the twin's last 3-D run that drift is measured against."""

    version: int
    map_mmhg: float
    gradient_mmhg: float | None
    gradient_source: str
    flow_3d_ml_s: float | None = None
    eoa_cm2: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AssimilationState:
    """The filter's state after some observations (plain data, JSON round trip exact).

    Attributes
    ----------
    mean : posterior mean of :data:`PARAMETERS` (log SI).
    cov : posterior covariance (4 × 4, row-major tuples).
    time_utc : time of the last observation assimilated (ISO 8601 UTC), None before any.
    n_observations : observations assimilated since the prior.
    proximal_fraction : ``Rp/R`` of the twin's fit, fixed.
    basis : the physiology the prior was built from (the twin's at its last 3-D run).
    reference : metrics at the last 3-D run (drift).
    """

    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    time_utc: str | None
    n_observations: int
    proximal_fraction: float
    basis: Mapping[str, Any]
    reference: Reference
    last_update: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> datetime | None:
        """:attr:`time_utc` as a datetime."""
        return _parse(self.time_utc)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, cov)`` as numpy arrays."""
        return np.array(self.mean, dtype=float), np.array(self.cov, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats round-trip exactly through JSON)."""
        return {"parameters": list(PARAMETERS), "mean": list(self.mean),
                "cov": [list(r) for r in self.cov], "time_utc": self.time_utc,
                "n_observations": self.n_observations,
                "proximal_fraction": self.proximal_fraction, "basis": dict(self.basis),
                "reference": self.reference.to_dict(), "last_update": dict(self.last_update)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AssimilationState:
        """Inverse of :meth:`to_dict`."""
        if list(d.get("parameters", [])) != list(PARAMETERS):
            raise InputError(f"assimilation state has parameters {d.get('parameters')!r}; this "
                             f"code reads {list(PARAMETERS)}")
        return cls(mean=tuple(float(v) for v in d["mean"]),
                   cov=tuple(tuple(float(v) for v in r) for r in d["cov"]),
                   time_utc=d["time_utc"], n_observations=int(d["n_observations"]),
                   proximal_fraction=float(d["proximal_fraction"]), basis=dict(d["basis"]),
                   reference=Reference(**d["reference"]),
                   last_update=dict(d.get("last_update") or {}))


def _pack(mean: np.ndarray, cov: np.ndarray) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
    return tuple(float(v) for v in mean), tuple(tuple(float(v) for v in r) for r in cov)


def _gradient(twin: PatientTwin, q_sys_ml_s: float) -> tuple[float | None, str, float | None,
                                                              float | None]:
    """Valve gradient (mmHg) at mean systolic flow: from the stored 3-D baseline run or 4v²."""
    base = next((r for r in twin.results if r.get("label") == "baseline"), None)
    summary = (base or {}).get("summary") or {}
    g3d, q3d = summary.get("peak_gradient_mmhg"), summary.get("inflow_ml_s")
    if g3d is not None and q3d:
        return float(g3d), "3-D baseline run, scaled by (Q/Q_3D)²", float(q3d), None
    lms = twin.anatomy.get("landmarks") or {}
    eoa_mm2 = lms.get("valve_orifice_area_mm2")
    if eoa_mm2:
        v = units.ml_to_m3(q_sys_ml_s) / (float(eoa_mm2) * 1e-6)
        return 4.0 * v * v, "ΔP = 4v², v = Q/EOA (valve orifice area)", None, float(eoa_mm2) / 100
    return None, "no valve data (no 3-D run, no orifice area)", None, None


def _gradient_at(ref: Reference, q_sys_ml_s: float) -> float | None:
    if ref.gradient_mmhg is None:
        return None
    if ref.flow_3d_ml_s:
        return ref.gradient_mmhg * (q_sys_ml_s / ref.flow_3d_ml_s) ** 2
    v = units.ml_to_m3(q_sys_ml_s) / (float(ref.eoa_cm2) * 1e-4)
    return 4.0 * v * v


def _q_sys_ml_s(x: np.ndarray) -> float:
    """Mean systolic flow SV/LVET (mL/s) for a state vector."""
    hr = min(max(60.0 / math.exp(x[2]), _HR_LIMITS_BPM[0]), _HR_LIMITS_BPM[1])
    return units.m3_to_ml(math.exp(x[3])) / lvet_s(hr)


def initial_state(twin: PatientTwin) -> AssimilationState:
    """The prior: the twin's build physiology fitted to a total RCR load (the last 3-D run's
    state), with :data:`PRIOR_SD` around it."""
    phys = twin.physiology
    basis = Physiology(heart_rate_bpm=phys.heart_rate_bpm, stroke_volume_ml=phys.stroke_volume_ml,
                       systolic_bp_mmhg=phys.systolic_bp_mmhg,
                       diastolic_bp_mmhg=phys.diastolic_bp_mmhg)
    fit = fit_total_load(basis)
    mean = np.log([fit["R"], fit["C"], 60.0 / phys.heart_rate_bpm,
                   units.ml_to_m3(phys.stroke_volume_ml)])
    cov = np.diag(np.square(PRIOR_SD))
    v = _vitals(mean, fit["proximal_fraction"], pressures=False)
    q_sys = _q_sys_ml_s(mean)
    g, how, q3d, eoa = _gradient(twin, q_sys)
    if q3d is not None and g is not None:  # the 3-D run's gradient at the prior's flow
        g = g * (q_sys / q3d) ** 2
    ref = Reference(version=int(twin.version), map_mmhg=units.pa_to_mmhg(v["8478-0"]),
                    gradient_mmhg=g, gradient_source=how, flow_3d_ml_s=q3d, eoa_cm2=eoa)
    m, c = _pack(mean, cov)
    return AssimilationState(mean=m, cov=c, time_utc=None, n_observations=0,
                             proximal_fraction=float(fit["proximal_fraction"]),
                             basis=phys.to_dict(), reference=ref)


def _predict(cov: np.ndarray, dt_s: float) -> np.ndarray:
    """The covariance after ``dt_s`` seconds of random walk, each variance growing by
    ``Q·Δt`` but not beyond the prior's (:data:`PRIOR_SD`²): after a long gap the twin knows
    about as much as when it was built, not less."""
    grow = _Q_PER_S * max(dt_s, 0.0)
    room = np.clip(_PRIOR_VAR - np.diag(cov), 0.0, None)
    return cov + np.diag(np.minimum(grow, room))


def _update(mean: np.ndarray, cov: np.ndarray, code: str, y: float, fraction: float
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """One scalar UKF update; returns the new mean, covariance and normalised innovation."""
    sig = _sigma_points(mean, cov)
    pressures = code in ("8480-6", "8462-4")
    ys = np.array([_vitals(s, fraction, pressures=pressures)[code] for s in sig])
    y_hat = float(_WM @ ys)
    dy = ys - y_hat
    dx = sig - mean
    sd = MEASUREMENT_NOISE[code].sd(y_hat)  # of the prediction: the observed value would bias
    pyy = float(_WC @ (dy * dy)) + sd * sd
    pxy = (_WC * dy) @ dx
    gain = pxy / pyy
    innovation = y - y_hat
    new_mean = mean + gain * innovation
    new_cov = cov - np.outer(gain, gain) * pyy
    new_cov = 0.5 * (new_cov + new_cov.T)
    return new_mean, new_cov, innovation / math.sqrt(pyy)


def assimilate(state: AssimilationState, observations: Iterable[Observation]
               ) -> AssimilationState:
    """The posterior after ``observations`` (one batch), from ``state``.

    The observations are taken in time order (ties by code, device, value); those of codes
    without a :data:`MEASUREMENT_NOISE` entry are skipped (stored, not assimilated). Before each
    one the covariance grows by the process noise for the time since the previous one (an
    observation earlier than the state's time is assimilated with no growth).
    """
    obs = sorted((o for o in observations if o.code in MEASUREMENT_NOISE),
                 key=lambda o: (o.time, o.code, o.device, o.value))
    if not obs:
        return state
    mean, cov = state.arrays()
    before = mean.copy()
    t_prev = state.time
    worst = 0.0
    for o in obs:
        if t_prev is not None:
            cov = _predict(cov, (o.time - t_prev).total_seconds())
        mean, cov, nu = _update(mean, cov, o.code, o.value, state.proximal_fraction)
        worst = max(worst, abs(nu))
        t_prev = o.time if t_prev is None or o.time > t_prev else t_prev
    m, c = _pack(mean, cov)
    codes: dict[str, int] = {}
    for o in obs:
        codes[o.code] = codes.get(o.code, 0) + 1
    digest = hashlib.sha256("\n".join(sorted(observation_sha256(o) for o in obs)).encode())
    last = {"n": len(obs), "codes": codes, "first_utc": _iso(obs[0].time),
            "last_utc": _iso(obs[-1].time), "observations_sha256": digest.hexdigest(),
            "max_abs_normalised_innovation": worst,
            "mean_before": [float(v) for v in before]}
    return replace(state, mean=m, cov=c, time_utc=_iso(t_prev),
                   n_observations=state.n_observations + len(obs), last_update=last)


# ----------------------------------------------------------------------------- what it says
@dataclass(frozen=True)
class Estimate:
    """A predicted quantity with its spread (one standard deviation), in clinical units."""

    name: str
    mean: float
    sd: float
    unit: str


@dataclass(frozen=True)
class TwinEstimate:
    """What the twin says at a time: physiology with spread, data age, stale and drift flags.

    Attributes
    ----------
    as_of_utc : the time it speaks for (ISO 8601 UTC).
    estimates : name → :class:`Estimate` (heart rate, stroke volume, cardiac output, pressures,
        resistance, compliance, Rd·C, valve gradient).
    outlets : outlet name → ``{"Rp", "C", "Rd"}`` (SI) of the posterior mean split by Murray
        shares; empty when the twin has no mesh.
    last_observation_utc : time of the last accepted observation, None when none.
    data_age_s : seconds since then, None when none.
    stale, stale_reason : older than :data:`STALE_AFTER_S` (or no data).
    drift, drift_reasons : metrics moved beyond the thresholds since the last 3-D run.
    n_observations : observations assimilated.
    """

    as_of_utc: str
    estimates: Mapping[str, Estimate]
    outlets: Mapping[str, Mapping[str, float]]
    last_observation_utc: str | None
    data_age_s: float | None
    stale: bool
    stale_reason: str
    drift: bool
    drift_reasons: tuple[str, ...]
    n_observations: int
    reference: Reference


def _metrics(x: np.ndarray, fraction: float, ref: Reference) -> dict[str, float]:
    v = _vitals(x, fraction, pressures=True)
    r, c = math.exp(x[0]), math.exp(x[1])
    out = {
        "heart_rate": units.hz_to_bpm(v["8867-4"]),
        "stroke_volume": units.m3_to_ml(v["20562-5"]),
        "cardiac_output": units.m3_s_to_l_min(v["8741-1"]),
        "systolic_bp": units.pa_to_mmhg(v["8480-6"]),
        "diastolic_bp": units.pa_to_mmhg(v["8462-4"]),
        "mean_bp": units.pa_to_mmhg(v["8478-0"]),
        "resistance": units.pa_s_m3_to_mmhg_s_ml(r),
        "compliance": c * 1e6 * units.mmhg_to_pa(1.0),  # mL/mmHg
        "rd_c": (1.0 - fraction) * r * c,
    }
    g = _gradient_at(ref, _q_sys_ml_s(x))
    if g is not None:
        out["valve_gradient"] = g
    return out


_UNITS = {"heart_rate": "/min", "stroke_volume": "mL", "cardiac_output": "L/min",
          "systolic_bp": "mmHg", "diastolic_bp": "mmHg", "mean_bp": "mmHg",
          "resistance": "mmHg·s/mL", "compliance": "mL/mmHg", "rd_c": "s",
          "valve_gradient": "mmHg"}


def _duration(seconds: float) -> str:
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def status(state: AssimilationState, twin: PatientTwin | None = None, *,
           as_of: datetime) -> TwinEstimate:
    """What the twin says at ``as_of``: the posterior widened by the process noise for the data
    age, pushed through the model by the unscented transform; stale and drift flags.

    ``twin`` (optional) gives the outlets to split the load over (Murray shares of its caps).
    """
    if as_of.tzinfo is None:
        raise InputError("as_of must carry a timezone (UTC)")
    mean, cov = state.arrays()
    t_last = state.time
    age = None if t_last is None else (as_of - t_last).total_seconds()
    if age is not None and age > 0:
        cov = _predict(cov, age)
    sig = _sigma_points(mean, cov)
    rows = [_metrics(s, state.proximal_fraction, state.reference) for s in sig]
    estimates = {}
    for name in rows[0]:
        vals = np.array([r[name] for r in rows])
        m = float(_WM @ vals)
        sd = math.sqrt(max(float(_WC @ (vals - m) ** 2), 0.0))
        estimates[name] = Estimate(name, m, sd, _UNITS[name])
    at_mean = _metrics(mean, state.proximal_fraction, state.reference)
    if age is None:
        stale, why = True, "no monitoring observation assimilated yet"
    elif age > STALE_AFTER_S:
        stale, why = True, (f"last observation {_duration(age)} old (stale after "
                            f"{STALE_AFTER_S / 60:.0f} min)")
    else:
        stale, why = False, ""
    reasons = []
    ref = state.reference
    d_map = at_mean["mean_bp"] - ref.map_mmhg
    if abs(d_map) > DRIFT_MAP_MMHG:
        reasons.append(f"mean arterial pressure {at_mean['mean_bp']:.0f} mmHg vs "
                       f"{ref.map_mmhg:.0f} mmHg at the last 3-D run (version {ref.version}); "
                       f"threshold ±{DRIFT_MAP_MMHG:g} mmHg")
    g = at_mean.get("valve_gradient")
    if g is not None and ref.gradient_mmhg is not None:
        dg = g - ref.gradient_mmhg
        if (abs(dg) > DRIFT_GRADIENT_FRACTION * ref.gradient_mmhg
                and abs(dg) > DRIFT_GRADIENT_MIN_MMHG):
            reasons.append(f"valve gradient {g:.1f} mmHg vs {ref.gradient_mmhg:.1f} mmHg at the "
                           f"last 3-D run; threshold ±{100 * DRIFT_GRADIENT_FRACTION:g} %")
    outlets: dict[str, dict[str, float]] = {}
    caps = (twin.mesh or {}).get("caps", []) if twin is not None else []
    areas = {c["name"]: float(c["area_mm2"]) for c in caps
             if str(c.get("name", "")).startswith("outlet")}
    if areas:
        r, c = math.exp(mean[0]), math.exp(mean[1])
        f = state.proximal_fraction
        split = split_total({"Rp": f * r, "C": c, "Rd": (1 - f) * r}, murray_shares(areas))
        outlets = {k: {"Rp": v.Rp, "C": v.C, "Rd": v.Rd} for k, v in split.items()}
    return TwinEstimate(as_of_utc=_iso(as_of), estimates=estimates, outlets=outlets,
                        last_observation_utc=state.time_utc, data_age_s=age, stale=stale,
                        stale_reason=why, drift=bool(reasons), drift_reasons=tuple(reasons),
                        n_observations=state.n_observations, reference=ref)


def state_of(twin: PatientTwin) -> AssimilationState:
    """The twin's filter state: the stored one, or a new prior when there is none or the twin's
    physiology changed since (a rebuild: a new 3-D run starts a new filter)."""
    stored = twin.parameters.get(ASSIMILATION_KEY)
    if stored:
        state = AssimilationState.from_dict(stored)
        if dict(state.basis) == twin.physiology.to_dict():
            return state
        log.info("twin %s: physiology changed since the filter started; new prior",
                 twin.pseudonym)
    return initial_state(twin)
