"""The device catalog: families, sizes, geometry, frame mechanics and sizing rules, validated on load.

The shipped catalog is ``catalog.toml`` beside this module; every number in it names its source
(or is marked as a modelling assumption with its reasoning). Users add their own designs in a
TOML file of the same shape, merged over the shipped one by :func:`load_catalog` (a user family
with the key of a shipped family replaces it). Validation errors name the key, e.g.
``families.my_valve.sizes[2].frame_height_mm: Input should be greater than 2 (got 1.0)``.

Families by ``kind`` and the quantity they are sized by (``sizing_by``):

==============================  =======================================================
kind                            sizing_by (range fields on each size)
==============================  =======================================================
``transcatheter_aortic_valve``  ``annulus_area`` (``annulus_area_min_mm2``/``_max_mm2``) or
                                ``annulus_perimeter`` (``annulus_perimeter_min_mm``/``_max_mm``)
``aortic_stent``                ``vessel_diameter`` (``vessel_diameter_min_mm``/``_max_mm``)
``laa_occluder``                ``laa_ostium_diameter`` (``laa_ostium_diameter_min_mm``/``_max_mm``)
                                or ``laa_landing_zone_diameter`` (``…_min_mm``/``_max_mm``)
``septal_occluder``             ``defect_diameter`` (``defect_diameter_min_mm``/``_max_mm``)
==============================  =======================================================
"""

from __future__ import annotations

import logging
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cardiotwin.errors import ConfigError, DeviceError

CATALOG_PATH = Path(__file__).with_name("catalog.toml")

log = logging.getLogger(__name__)

Kind = Literal["transcatheter_aortic_valve", "aortic_stent", "laa_occluder", "septal_occluder"]
SizingBy = Literal["annulus_area", "annulus_perimeter", "vessel_diameter", "laa_ostium_diameter",
                   "laa_landing_zone_diameter", "defect_diameter"]

#: The sizing quantities each kind may use.
SIZING_BY_KIND: dict[str, tuple[str, ...]] = {
    "transcatheter_aortic_valve": ("annulus_area", "annulus_perimeter"),
    "aortic_stent": ("vessel_diameter",),
    "laa_occluder": ("laa_ostium_diameter", "laa_landing_zone_diameter"),
    "septal_occluder": ("defect_diameter",),
}

#: Per sizing quantity: (field prefix on a size, unit suffix, unit shown to users, description).
SIZING_FIELDS: dict[str, tuple[str, str, str, str]] = {
    "annulus_area": ("annulus_area", "mm2", "mm²", "CT annulus area"),
    "annulus_perimeter": ("annulus_perimeter", "mm", "mm", "CT annulus perimeter"),
    "vessel_diameter": ("vessel_diameter", "mm", "mm", "reference vessel diameter"),
    "laa_ostium_diameter": ("laa_ostium_diameter", "mm", "mm", "maximum LAA ostium diameter"),
    "laa_landing_zone_diameter": ("laa_landing_zone_diameter", "mm", "mm",
                                  "maximum LAA landing-zone diameter"),
    "defect_diameter": ("defect_diameter", "mm", "mm", "stretched defect diameter"),
}

_VALVE_REQUIRED = ("skirt_fraction", "leaflet_orifice_fraction", "nominal_depth_mm",
                   "leaflet_position")


class DeviceSize(BaseModel):
    """One size of a device family (mm, mm²).

    Only the sizing range of the family's ``sizing_by`` quantity is required; the dimensions
    that do not apply to a kind (leaflets of an occluder) stay None.

    ``inflow_diameter_mm`` / ``outflow_diameter_mm`` are the free diameters at the two ends:
    valves and stents: the inflow (proximal) and outflow (distal) frame edges; LAA occluders:
    inflow = the disc or proximal face on the atrial side, outflow = the lobe; septal occluders:
    inflow = the right-atrial disc, outflow = the left-atrial disc (the convention of
    :mod:`cardiotwin.devices.surfaces`). ``frame_height_mm`` is the frame's axial length (the
    lobe length of an LAA occluder, the waist length of a septal occluder).
    ``leaflet_height_mm`` is the leaflets' axial height from their base to the commissure tops.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    nominal_diameter_mm: float = Field(gt=2, lt=60)
    frame_height_mm: float = Field(gt=2, lt=80)
    inflow_diameter_mm: float | None = Field(default=None, gt=2, lt=70)
    outflow_diameter_mm: float | None = Field(default=None, gt=2, lt=70)
    skirt_height_mm: float | None = Field(default=None, ge=0, lt=80)
    leaflet_height_mm: float | None = Field(default=None, gt=0, lt=80)
    radial_stiffness_n_per_mm: float | None = Field(default=None, gt=0)
    annulus_area_min_mm2: float | None = Field(default=None, gt=0)
    annulus_area_max_mm2: float | None = Field(default=None, gt=0)
    annulus_perimeter_min_mm: float | None = Field(default=None, gt=0)
    annulus_perimeter_max_mm: float | None = Field(default=None, gt=0)
    vessel_diameter_min_mm: float | None = Field(default=None, gt=0)
    vessel_diameter_max_mm: float | None = Field(default=None, gt=0)
    laa_ostium_diameter_min_mm: float | None = Field(default=None, gt=0)
    laa_ostium_diameter_max_mm: float | None = Field(default=None, gt=0)
    laa_landing_zone_diameter_min_mm: float | None = Field(default=None, gt=0)
    laa_landing_zone_diameter_max_mm: float | None = Field(default=None, gt=0)
    defect_diameter_min_mm: float | None = Field(default=None, gt=0)
    defect_diameter_max_mm: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ranges(self) -> DeviceSize:
        for prefix, unit, _, _ in SIZING_FIELDS.values():
            lo, hi = getattr(self, f"{prefix}_min_{unit}"), getattr(self, f"{prefix}_max_{unit}")
            if (lo is None) != (hi is None):
                raise ValueError(f"{prefix}_min_{unit} and {prefix}_max_{unit} go together "
                                 f"(got {lo} and {hi})")
            if lo is not None and lo >= hi:
                raise ValueError(f"{prefix}_min_{unit} must be below {prefix}_max_{unit} "
                                 f"(got {lo:g} and {hi:g})")
        return self

    def sizing_range(self, sizing_by: str) -> tuple[float, float] | None:
        """The chart range of ``sizing_by`` (its unit: mm² for the area, mm otherwise)."""
        prefix, unit, _, _ = SIZING_FIELDS[sizing_by]
        lo = getattr(self, f"{prefix}_min_{unit}")
        return None if lo is None else (lo, getattr(self, f"{prefix}_max_{unit}"))


class DeviceFamily(BaseModel):
    """A device family: kind, frame, geometry rules and sources shared by its sizes, and the sizes.

    ``radial_stiffness_n_per_mm`` is the whole-frame radial force per mm of frame *diameter*
    reduction (mode 0), the number the device–wall mechanics uses; a size may override it.
    ``oversizing_warn_below_pct`` / ``_above_pct`` / ``oversizing_target_pct`` are in the
    family's :attr:`oversizing_metric` (area, perimeter or diameter).
    The valve-only fields (``skirt_fraction``, ``leaflet_orifice_fraction``,
    ``nominal_depth_mm``, ``leaflet_position``) are required for
    ``kind = "transcatheter_aortic_valve"`` and optional otherwise.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    kind: Kind
    expansion: Literal["balloon", "self"]
    sizing_by: SizingBy
    sizing_source: str = Field(min_length=1)
    geometry_source: str = Field(min_length=1)
    mechanics_source: str = Field(min_length=1)
    oversizing_source: str = ""
    frame_material: str = Field(min_length=1)
    strut_width_mm: float = Field(gt=0, lt=3)
    strut_thickness_mm: float = Field(gt=0, lt=3)
    cells_circumferential: int | None = Field(default=None, ge=3, le=200)
    cell_rows: int | None = Field(default=None, ge=1, le=50)
    radial_stiffness_n_per_mm: float = Field(gt=0, lt=10000)
    frame_wall_mm: float = Field(gt=0, lt=3)
    skirt_fraction: float | None = Field(default=None, gt=0, le=1)
    leaflet_orifice_fraction: float | None = Field(default=None, gt=0.1, le=1)
    nominal_depth_mm: float | None = Field(default=None, ge=-5, le=15)
    leaflet_position: Literal["intra_annular", "supra_annular"] | None = None
    oversizing_warn_below_pct: float
    oversizing_warn_above_pct: float
    oversizing_target_pct: float | None = None
    sizes: list[DeviceSize] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceFamily:
        allowed = SIZING_BY_KIND[self.kind]
        if self.sizing_by not in allowed:
            raise ValueError(f"sizing_by {self.sizing_by!r} does not apply to kind {self.kind!r}; "
                             f"use {' or '.join(repr(a) for a in allowed)}")
        if self.kind == "transcatheter_aortic_valve":
            missing = [k for k in _VALVE_REQUIRED if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a transcatheter_aortic_valve family needs {', '.join(missing)}")
        if self.oversizing_warn_below_pct >= self.oversizing_warn_above_pct:
            raise ValueError(
                f"oversizing_warn_below_pct ({self.oversizing_warn_below_pct:g}) must be below "
                f"oversizing_warn_above_pct ({self.oversizing_warn_above_pct:g})")
        prefix, unit, _, _ = SIZING_FIELDS[self.sizing_by]
        for i, s in enumerate(self.sizes):
            if s.sizing_range(self.sizing_by) is None:
                raise ValueError(f"sizes[{i}] (nominal {s.nominal_diameter_mm:g} mm) has no "
                                 f"{prefix}_min_{unit}/{prefix}_max_{unit}, required by "
                                 f"sizing_by = {self.sizing_by!r}")
        diameters = [s.nominal_diameter_mm for s in self.sizes]
        if len(set(diameters)) != len(diameters):
            raise ValueError(f"sizes repeat a nominal_diameter_mm: {diameters}")
        return self

    @property
    def oversizing_metric(self) -> str:
        """``"area"``, ``"perimeter"`` or ``"diameter"``: what the oversizing limits refer to."""
        return {"annulus_area": "area", "annulus_perimeter": "perimeter"}.get(self.sizing_by,
                                                                              "diameter")

    @property
    def sizing_label(self) -> str:
        """The sizing quantity as a user reads it, with its unit (e.g. ``"CT annulus area (mm²)"``)."""
        _, _, unit, text = SIZING_FIELDS[self.sizing_by]
        return f"{text} ({unit})"

    def radial_stiffness_of(self, size: DeviceSize) -> float:
        """Whole-frame radial stiffness (N per mm of diameter reduction) of ``size``."""
        return size.radial_stiffness_n_per_mm or self.radial_stiffness_n_per_mm

    def skirt_height_of(self, size: DeviceSize) -> float | None:
        """Skirt height of ``size`` (mm): its own figure, else ``skirt_fraction`` × frame height."""
        if size.skirt_height_mm is not None:
            return size.skirt_height_mm
        return None if self.skirt_fraction is None else self.skirt_fraction * size.frame_height_mm

    def size(self, nominal_diameter_mm: float) -> DeviceSize:
        """The size with this nominal diameter; :class:`DeviceError` listing the sizes if absent."""
        for s in self.sizes:
            if abs(s.nominal_diameter_mm - nominal_diameter_mm) < 1e-6:
                return s
        avail = ", ".join(f"{s.nominal_diameter_mm:g}" for s in self.sizes)
        raise DeviceError(
            f"size {nominal_diameter_mm:g} mm is not in the catalog for {self.label!r}; "
            f"available sizes: {avail} mm")


class Catalog(BaseModel):
    """All device families by key (in the order of the file; user families after shipped ones)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    families: dict[str, DeviceFamily]

    def family(self, key: str) -> DeviceFamily:
        """The family named ``key``; :class:`DeviceError` listing the known families if absent."""
        try:
            return self.families[key]
        except KeyError:
            raise DeviceError(
                f"unknown device family {key!r}; known families: {', '.join(self.families)}"
            ) from None


def load_catalog(path: str | Path | None = None, *, include_shipped: bool = True) -> Catalog:
    """Load and validate a device catalog.

    Parameters
    ----------
    path : str or Path, optional
        A user catalog TOML (same shape as the shipped ``catalog.toml``). None: the shipped
        catalog alone.
    include_shipped : bool
        Merge the user file over the shipped catalog (default): its families are added, and one
        with the key of a shipped family replaces that family. False: the user file alone.

    Raises
    ------
    ConfigError
        If the file does not exist, cannot be parsed, or a key is missing or out of range; the
        message names the file and the key (``families.<key>.sizes[<i>].<field>``) and the value.
    """
    if path is None:
        return _shipped_catalog()
    path = Path(path)
    user = _read(path)
    if include_shipped:
        shipped = _read(CATALOG_PATH)
        families = dict(shipped.get("families", {}))
        replaced = sorted(set(families) & set(user.get("families", {}) or {}))
        if replaced:
            log.info("user catalog %s replaces shipped families %s", path, ", ".join(replaced))
        user_families = user.get("families", {})
        if isinstance(user_families, dict):
            families.update(user_families)
            data = {**user, "families": families}
        else:
            data = user  # let validation name the problem
    else:
        data = user
    return _validate(data, path)


@lru_cache(maxsize=1)
def _shipped_catalog() -> Catalog:
    return _validate(_read(CATALOG_PATH), CATALOG_PATH)


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"device catalog {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"device catalog {path} is not valid TOML: {exc}") from None


def _key(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _validate(data: dict[str, Any], path: Path) -> Catalog:
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = "" if isinstance(got, dict | list) or e["type"] == "missing" \
                else f" (got {got!r})"
            problems.append(f"{_key(e['loc'])}: {msg}{shown}")
        raise ConfigError(f"device catalog {path} is invalid: {'; '.join(problems)}") from None
