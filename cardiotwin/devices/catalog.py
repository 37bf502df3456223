"""The device catalog: families, sizes, geometry and sizing rules, validated on load.

The shipped catalog is ``catalog.toml`` beside this module; every number in it names its source.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cardiotwin.errors import ConfigError, DeviceError

CATALOG_PATH = Path(__file__).with_name("catalog.toml")


class DeviceSize(BaseModel):
    """One size of a device family (mm, mm²)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nominal_diameter_mm: float = Field(gt=5, lt=60)
    frame_height_mm: float = Field(gt=2, lt=80)
    annulus_area_min_mm2: float = Field(gt=0)
    annulus_area_max_mm2: float = Field(gt=0)

    @model_validator(mode="after")
    def _range(self) -> DeviceSize:
        if self.annulus_area_min_mm2 >= self.annulus_area_max_mm2:
            raise ValueError("annulus_area_min_mm2 must be below annulus_area_max_mm2")
        return self


class DeviceFamily(BaseModel):
    """A device family: geometry rules shared by its sizes, and the sizes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    kind: str
    sizing_source: str
    geometry_source: str
    frame_wall_mm: float = Field(gt=0, lt=3)
    skirt_fraction: float = Field(gt=0, le=1)
    leaflet_orifice_fraction: float = Field(gt=0.1, le=1)
    nominal_depth_mm: float = Field(ge=-5, le=15)
    oversizing_warn_below_pct: float
    oversizing_warn_above_pct: float
    sizes: list[DeviceSize] = Field(min_length=1)

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
    """All device families by key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    families: dict[str, DeviceFamily]

    def family(self, key: str) -> DeviceFamily:
        """The family named ``key``; :class:`DeviceError` listing the known families if absent."""
        try:
            return self.families[key]
        except KeyError:
            raise DeviceError(
                f"unknown device family {key!r}; known families: {', '.join(sorted(self.families))}"
            ) from None


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog TOML (the shipped one by default).

    Raises
    ------
    ConfigError
        If the file cannot be parsed or a key is missing or out of range (the message names it).
    """
    if path is None:
        return _shipped_catalog()
    return _load(Path(path))


@lru_cache(maxsize=1)
def _shipped_catalog() -> Catalog:
    return _load(CATALOG_PATH)


def _load(path: Path) -> Catalog:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"device catalog {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"device catalog {path} is not valid TOML: {exc}") from None
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"device catalog {path} is invalid: {problems}") from None
