"""Devices: the catalog with its sources, sizing on the annulus, placement and flow regions.

Modules
-------
catalog
    ``catalog.toml`` read and validated, a user catalog merged over it (:func:`load_catalog`,
    :class:`Catalog`, :class:`DeviceFamily`, :class:`DeviceSize`): valves (balloon- and
    self-expanding), aortic stents, LAA and septal occluders with frame and sizing rules.
sizing
    :func:`size_device_family` (any family), :func:`assess_sizes` (valves on the CT annulus),
    :func:`assess_sizes_by_diameter` (stents and occluders on a user-supplied diameter) →
    :class:`SizingReport` (area/perimeter/diameter oversizing per size, recommendation, warnings,
    uncovered area, coronary-obstruction risk).
placement
    :func:`place_device` → :class:`DevicePlacement` (valves, stents, occluders; pose checked against
    the lumen); :func:`device_region` (Brinkman region).
surfaces
    :func:`device_surface` → :class:`DeviceSurface` (closed surface with part ids, placed);
    :func:`save_device_surface` / :func:`read_device_surface` (STL, VTP).
"""
