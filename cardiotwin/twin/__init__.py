"""The patient twin: its versioned state and the calibration of its boundary conditions.

Modules
-------
state
    :class:`PatientTwin` (JSON round trip, pseudonym only) and :class:`Physiology`.
calibrate
    Outlet resistances and per-outlet Windkessels fitted to the patient's pressures.
assimilate
    Unscented Kalman filter of the 0-D physiology (total R, C, heart period, stroke volume) fed by
    monitoring observations; data age, stale and drift flags.
history
    Observations as stored rows, the update of one ingest, replay of the stored history.
"""
