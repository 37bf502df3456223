"""The patient twin: its versioned state and the calibration of its boundary conditions.

Modules
-------
state
    :class:`PatientTwin` (JSON round trip, pseudonym only) and :class:`Physiology`.
calibrate
    Outlet resistances and per-outlet Windkessels fitted to the patient's pressures.
"""
