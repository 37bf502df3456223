"""Devices: the catalog with its sources, sizing on the annulus, placement and flow regions.

Modules
-------
catalog
    ``catalog.toml`` read and validated (:func:`load_catalog`, :class:`Catalog`).
sizing
    :func:`assess_sizes` → :class:`SizingReport` (oversizing per size, recommendation, warnings).
placement
    :func:`place_device` → :class:`DevicePlacement` (valves, stents, occluders; pose checked against
    the lumen); :func:`device_region` (Brinkman region).
surfaces
    :func:`device_surface` → :class:`DeviceSurface` (closed surface with part ids, placed);
    :func:`save_device_surface` / :func:`read_device_surface` (STL, VTP).
"""
