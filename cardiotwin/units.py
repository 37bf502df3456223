"""Unit conversion: the one place where clinical units meet SI.

Geometry is in millimetres (DICOM patient coordinates), physics in SI. Clinical units (mmHg, mL,
L/min, bpm, cm²) appear only at the edges and are converted here.
"""

from __future__ import annotations

MMHG_IN_PA = 133.322387415
"""One millimetre of mercury in pascals (conventional, 13.5951 g/cm³ × 9.80665 m/s² × 1 mm)."""


def mmhg_to_pa(p_mmhg: float) -> float:
    """Convert a pressure from mmHg to Pa."""
    return p_mmhg * MMHG_IN_PA


def pa_to_mmhg(p_pa: float) -> float:
    """Convert a pressure from Pa to mmHg."""
    return p_pa / MMHG_IN_PA


M_PER_MM = 1e-3
"""Metres per millimetre: geometry (DICOM LPS) is in mm, physics in m."""


def mm_to_m(x_mm: float) -> float:
    """Convert a length from mm to m."""
    return x_mm * M_PER_MM


def m_to_mm(x_m: float) -> float:
    """Convert a length from m to mm."""
    return x_m * 1e3


def mm2_to_cm2(a_mm2: float) -> float:
    """Convert an area from mm² to cm²."""
    return a_mm2 * 1e-2


def cm2_to_m2(a_cm2: float) -> float:
    """Convert an area from cm² to m²."""
    return a_cm2 * 1e-4


def m2_to_cm2(a_m2: float) -> float:
    """Convert an area from m² to cm²."""
    return a_m2 * 1e4


def ml_to_m3(v_ml: float) -> float:
    """Convert a volume from mL to m³."""
    return v_ml * 1e-6


def m3_to_ml(v_m3: float) -> float:
    """Convert a volume from m³ to mL."""
    return v_m3 * 1e6


def l_min_to_m3_s(q_l_min: float) -> float:
    """Convert a flow from L/min to m³/s."""
    return q_l_min * 1e-3 / 60.0


def m3_s_to_l_min(q_m3_s: float) -> float:
    """Convert a flow from m³/s to L/min."""
    return q_m3_s * 60.0 * 1e3


def m3_s_to_ml_s(q_m3_s: float) -> float:
    """Convert a flow from m³/s to mL/s."""
    return q_m3_s * 1e6


def bpm_to_hz(hr_bpm: float) -> float:
    """Convert a heart rate from beats per minute to Hz."""
    return hr_bpm / 60.0


def mmhg_s_ml_to_pa_s_m3(r: float) -> float:
    """Convert a hydraulic resistance from mmHg·s/mL to Pa·s/m³."""
    return r * MMHG_IN_PA / 1e-6


def pa_s_m3_to_mmhg_s_ml(r: float) -> float:
    """Convert a hydraulic resistance from Pa·s/m³ to mmHg·s/mL."""
    return r * 1e-6 / MMHG_IN_PA


def ms_to_s(t_ms: float) -> float:
    """Convert a time from milliseconds to seconds."""
    return t_ms * 1e-3


def s_to_ms(t_s: float) -> float:
    """Convert a time from seconds to milliseconds."""
    return t_s * 1e3


def hz_to_bpm(f_hz: float) -> float:
    """Convert a rate from Hz (1/s) to beats (or breaths) per minute."""
    return f_hz * 60.0


def kpa_to_pa(p_kpa: float) -> float:
    """Convert a pressure from kPa to Pa."""
    return p_kpa * 1e3


def pa_to_kpa(p_pa: float) -> float:
    """Convert a pressure from Pa to kPa."""
    return p_pa * 1e-3


def l_to_m3(v_l: float) -> float:
    """Convert a volume from litres to m³."""
    return v_l * 1e-3


def ml_min_to_m3_s(q_ml_min: float) -> float:
    """Convert a flow from mL/min to m³/s."""
    return q_ml_min * 1e-6 / 60.0


def ml_s_to_m3_s(q_ml_s: float) -> float:
    """Convert a flow from mL/s to m³/s."""
    return q_ml_s * 1e-6


def percent_to_fraction(x_percent: float) -> float:
    """Convert a percentage (UCUM ``%``) to a fraction (UCUM ``1``): 97 % → 0.97."""
    return x_percent * 1e-2


def fraction_to_percent(x: float) -> float:
    """Convert a fraction (UCUM ``1``) to a percentage: 0.97 → 97 %."""
    return x * 1e2
