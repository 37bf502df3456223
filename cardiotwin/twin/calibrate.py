"""Calibration of the flow model's boundary conditions from the patient's physiology.

Stage 1 runs the 3-D model at **mean systolic flow** (the flow that sets the clinical mean
transvalvular gradient): Q_sys = SV / LVET. Outlets are resistances ``p_i = p_dia + R_i·Q_i``.

* The equivalent systolic resistance R_eq makes the mean ejection pressure (taken as the mean of
  systolic and diastolic pressure) appear at Q_sys: R_eq = (P_ej − P_dia) / Q_sys.
* It is split over the outlets in parallel in proportion to Murray's law: the flow share of outlet i
  is w_i = A_i^{3/2} / Σ A_j^{3/2} (flow ∝ r³, Murray CD, PNAS 1926;12:207–214), so R_i = R_eq / w_i.

The pulsatile Windkessel (RCR) calibration follows in issue 7.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.twin.state import Physiology


@dataclass(frozen=True)
class OutletCalibration:
    """Calibrated steady boundary conditions (SI)."""

    inflow_m3_s: float
    p0_pa: float
    equivalent_resistance_pa_s_m3: float
    resistances_pa_s_m3: dict[str, float]
    flow_shares: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate_outlets(physiology: Physiology, domain: FluidDomain) -> OutletCalibration:
    """Steady inflow and outlet resistances from heart rate, stroke volume and blood pressure.

    Raises
    ------
    InputError
        When the domain has no outlets or an outlet has no area.
    """
    outlets = domain.outlets
    if not outlets:
        raise InputError(f"fluid domain {domain.mesh_path} has no outlets (caps named 'outlet:...')")
    q_sys = units.ml_to_m3(physiology.mean_systolic_flow_ml_s)
    p_dia = units.mmhg_to_pa(physiology.diastolic_bp_mmhg)
    p_ej = units.mmhg_to_pa(0.5 * (physiology.systolic_bp_mmhg + physiology.diastolic_bp_mmhg))
    r_eq = (p_ej - p_dia) / q_sys
    weights = {}
    for cap in outlets:
        if cap.area_mm2 <= 0:
            raise InputError(f"outlet {cap.name!r} has area {cap.area_mm2} mm²; expected > 0")
        weights[cap.name] = cap.area_mm2**1.5
    total = sum(weights.values())
    shares = {k: w / total for k, w in weights.items()}
    res = {k: r_eq / s for k, s in shares.items()}
    return OutletCalibration(q_sys, p_dia, r_eq, res, shares)
