"""The haemodynamic study of a twin: steady and pulsatile runs, device rehearsals, their results.

Modules
-------
results
    Frozen, typed results a user sees (:class:`FlowSummary`, :class:`CycleSummary`,
    :class:`RehearsalComparison`, :class:`ComparisonRow`) and their stored form.
steady
    :func:`run_flow`: steady flow at mean systolic flow with calibrated resistance outlets.
cycle
    :func:`run_cycle` and :class:`CycleSettings`: pulsatile cycles with fitted Windkessels,
    checkpoints and resume, traces and warnings.
rehearsal
    :func:`plan_device` (sizing + placement) and :func:`rehearse_device` (native and device
    runs, the comparison); :func:`default_physiology`, :func:`native_region`.
sweep
    :func:`size_sweep` → :class:`SizeSweep`: the native valve once and every size of a family,
    with gradients, EOA (continuity, Gorlin) and outlet flows per size.

The study never touches the store: :mod:`cardiotwin.workflows` authorises, audits and stores.
"""

from cardiotwin.study.cycle import LEAK_WARNING_FRACTION, CycleSettings, run_cycle
from cardiotwin.study.progress import Progress, no_progress
from cardiotwin.study.rehearsal import (
    DEFAULT_FAMILY,
    DevicePlan,
    RehearsalRuns,
    default_physiology,
    native_region,
    plan_device,
    rehearse_device,
    size_family,
)
from cardiotwin.study.results import (
    ComparisonRow,
    ConvergenceNote,
    CycleSummary,
    FlowRun,
    FlowSummary,
    RehearsalComparison,
    Summary,
    summary_from_dict,
)
from cardiotwin.study.steady import clinical_flow_settings, run_flow
from cardiotwin.study.sweep import SizeSweep, SweepPoint, size_sweep

__all__ = [
    "DEFAULT_FAMILY", "LEAK_WARNING_FRACTION", "ComparisonRow", "ConvergenceNote", "CycleSettings",
    "CycleSummary", "DevicePlan", "FlowRun", "FlowSummary", "Progress", "RehearsalComparison",
    "RehearsalRuns", "SizeSweep", "Summary", "SweepPoint", "clinical_flow_settings",
    "default_physiology", "native_region", "no_progress", "plan_device", "rehearse_device",
    "run_cycle", "run_flow", "size_family", "size_sweep", "summary_from_dict",
]
