"""Devices: the catalog with its sources, sizing on the annulus, placement and flow regions.

Modules
-------
catalog
    ``catalog.toml`` read and validated (:func:`load_catalog`, :class:`Catalog`).
sizing
    :func:`assess_sizes` → :class:`SizingReport` (oversizing per size, recommendation, warnings).
placement
    :func:`place_device` → :class:`DevicePlacement`; :func:`device_region` (Brinkman region).
"""
