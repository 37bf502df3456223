"""Segmentation plug-ins: a locally installed model replaces the default per structure.

A deep model whose weights are on disk (TotalSegmentator, an nnU-Net or a MONAI bundle, a
model of your own) plugs in as a :class:`Segmenter`: an object with a ``name``, the cardiotwin
``structures`` it provides (names of :data:`~cardiotwin.imaging.volume.LABELS`), ``check()``
saying whether it can run here (and if not, why and what to do) and ``segment(ct)`` returning a
:class:`~cardiotwin.imaging.volume.LabelMap` of those structures on the CT grid.

Segmenters are found in two ways:

* **Entry points** of the group :data:`ENTRY_POINT_GROUP` (``"cardiotwin.segmenters"``) declared
  by any installed package, e.g. in its ``pyproject.toml``::

      [project.entry-points."cardiotwin.segmenters"]
      totalseg = "my_package.cardiotwin_plugin:TotalSegSegmenter"

  The entry point names a :class:`Segmenter` instance, a class, or a function without arguments
  returning one; the entry point's name is the segmenter's name.
* **Registration in code**: :func:`register_segmenter`.

:func:`available_segmenters` lists every segmenter found with its :class:`PluginStatus`; a
plug-in that fails to import, cannot be created, provides unknown structures or whose
``check()`` fails is listed as unavailable with the reason; discovery never raises because of
a plug-in. :func:`segment_with_plugins` runs the default :func:`~cardiotwin.imaging.segment.
segment_heart`, then each chosen segmenter, and :func:`combine` puts the plug-in's structures
in place of the default's; the report records which structure came from where.

Nothing here downloads anything: a plug-in whose weights are missing must say so in
``check()`` (where it looked and how to install them).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cardiotwin.errors import InputError, SegmentationError
from cardiotwin.imaging.labels import LabelSpec, relabel, resample_labels
from cardiotwin.imaging.segment import Segmentation, SegmentationSettings, segment_heart
from cardiotwin.imaging.volume import LABELS, LabelMap, Volume

__all__ = [
    "ENTRY_POINT_GROUP", "PluginStatus", "Segmenter", "available_segmenters", "combine",
    "get_segmenter", "labels_on_ct", "parse_segmenter_choice", "register_segmenter",
    "run_segmenter", "segment_with_plugins", "structure_sources", "unregister_segmenter",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cardiotwin.segmenters"
"""Entry-point group in which installed packages declare their segmenters."""

STRUCTURES: tuple[str, ...] = tuple(n for n in LABELS if n != "background")
"""The structure names a segmenter may provide."""

DEFAULT_SOURCE = "default"
"""Source recorded for structures of :func:`~cardiotwin.imaging.segment.segment_heart`."""


@dataclass(frozen=True)
class PluginStatus:
    """Whether a segmenter can run here, and why not.

    Attributes
    ----------
    available : bool
        True when the segmenter can run (code importable, weights found).
    reason : str
        When unavailable: what is missing and what to do (e.g. "weights not found at /path;
        install them with ..."). When available: optional detail (weights used, version).
    name : str
        The segmenter's name (filled in by discovery).
    structures : tuple of str
        Cardiotwin structures it provides (filled in by discovery).
    origin : str
        Where it was found: the entry point and its package, or "registered in code".
    """

    available: bool
    reason: str = ""
    name: str = ""
    structures: tuple[str, ...] = ()
    origin: str = ""

    def __post_init__(self) -> None:
        if not self.available and not self.reason.strip():
            raise InputError("an unavailable PluginStatus needs a reason saying what is missing "
                             "and what to do")


@runtime_checkable
class Segmenter(Protocol):
    """What a segmentation plug-in provides.

    Attributes
    ----------
    name : str
        Short name, used to choose it (``--segmenter NAME``).
    structures : tuple of str
        Cardiotwin structures it segments (names of :data:`~cardiotwin.imaging.volume.LABELS`
        other than ``background``), e.g. ``("aorta", "lv_blood", "myocardium")``.
    """

    name: str
    structures: tuple[str, ...]

    def check(self) -> PluginStatus:
        """Whether it can run here (weights on disk, libraries importable); never downloads."""
        ...

    def segment(self, ct: Volume) -> LabelMap:
        """Labels of :attr:`structures` for ``ct`` (HU), named with cardiotwin's structure
        names, on the CT grid (another grid is resampled onto it, nearest neighbour)."""
        ...


SegmenterSource = Segmenter | Callable[[], Segmenter]
"""A segmenter, a class of one, or a function without arguments returning one."""

_REGISTRY: dict[str, SegmenterSource] = {}


def register_segmenter(name: str, segmenter: SegmenterSource, *, replace: bool = False) -> None:
    """Make a segmenter available under ``name`` without an entry point.

    A registered segmenter takes precedence over an installed entry point of the same name.

    Raises
    ------
    InputError
        An empty name, or ``name`` already registered and ``replace`` is False.
    """
    if not name or not name.strip() or ":" in name:
        raise InputError(f"segmenter name {name!r} must be a non-empty name without ':'")
    if name in _REGISTRY and not replace:
        raise InputError(f"a segmenter named {name!r} is already registered; pass replace=True "
                         "or unregister_segmenter() it first")
    _REGISTRY[name] = segmenter


def unregister_segmenter(name: str) -> None:
    """Forget a segmenter registered with :func:`register_segmenter` (no-op if absent)."""
    _REGISTRY.pop(name, None)


# ---------------------------------------------------------------------------------------------
# discovery


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _describe(ep: metadata.EntryPoint) -> tuple[str, str]:
    """(origin text, install hint) of an entry point."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return f"entry point {ep.value}", "reinstall the package that declares it"
    pkg = dist.metadata["Name"] or "?"
    return (f"entry point {ep.value} of {pkg} {dist.version}",
            f"reinstall {pkg} (pip install --force-reinstall {pkg}) or uninstall it")


def _unavailable(name: str, reason: str, origin: str, structures: tuple[str, ...] = ()
                 ) -> tuple[None, PluginStatus]:
    return None, PluginStatus(False, reason, name, structures, origin)


def _instantiate(name: str, obj: Any, origin: str, hint: str
                 ) -> tuple[Segmenter | None, PluginStatus]:
    """The segmenter behind ``obj`` and its status; every failure becomes a status."""
    try:
        seg = obj() if isinstance(obj, type) or not isinstance(obj, Segmenter) else obj
    except Exception as exc:  # a broken plug-in is reported, never fatal to discovery
        return _unavailable(name, f"could not be created ({type(exc).__name__}: {exc}); {hint}",
                            origin)
    if not isinstance(seg, Segmenter):
        return _unavailable(name, f"{type(seg).__name__} is not a segmenter (it needs name, "
                            "structures, check() and segment()); " + hint, origin)
    try:
        structures = tuple(str(s) for s in seg.structures)
    except TypeError:
        structures = ()
    unknown = [s for s in structures if s not in STRUCTURES]
    if not structures or unknown:
        what = f"unknown structure(s) {unknown}" if unknown else "no structure"
        return _unavailable(name, f"provides {what}; a segmenter provides some of "
                            + ", ".join(STRUCTURES), origin, structures)
    try:
        status = seg.check()
    except Exception as exc:  # the plug-in's own check failing is a reason, not a crash
        return _unavailable(name, f"check() failed ({type(exc).__name__}: {exc}); {hint}",
                            origin, structures)
    if not isinstance(status, PluginStatus):
        return _unavailable(name, f"check() returned {type(status).__name__}, not a "
                            "PluginStatus; " + hint, origin, structures)
    status = dataclasses.replace(status, name=name, structures=structures, origin=origin)
    return (seg if status.available else None), status


def _discover(only: str | None = None) -> dict[str, tuple[Segmenter | None, PluginStatus]]:
    out: dict[str, tuple[Segmenter | None, PluginStatus]] = {}
    for name, obj in list(_REGISTRY.items()):
        if only is None or name == only:
            out[name] = _instantiate(name, obj, "registered in code",
                                     "fix the code that registers it")
    try:
        eps = _entry_points()
    except Exception as exc:  # broken metadata of some installed package
        logger.warning("could not read the %s entry points: %s", ENTRY_POINT_GROUP, exc)
        eps = []
    for ep in eps:
        if only is not None and ep.name != only:
            continue
        origin, hint = _describe(ep)
        if ep.name in out:
            logger.warning("segmenter %r: %s ignored, %s comes first", ep.name, origin,
                           out[ep.name][1].origin)
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a plug-in that fails to import is reported, never fatal
            out[ep.name] = _unavailable(
                ep.name, f"could not be imported ({type(exc).__name__}: {exc}); {hint}", origin)
            continue
        out[ep.name] = _instantiate(ep.name, obj, origin, hint)
    return out


def available_segmenters() -> tuple[PluginStatus, ...]:
    """Every segmenter found (registered, then entry points), each with its status.

    Never raises because of a plug-in: one that fails to import, to be created or to check
    itself is listed as unavailable with the reason.
    """
    return tuple(status for _, status in _discover().values())


def get_segmenter(name: str) -> Segmenter:
    """The available segmenter called ``name``.

    Use :func:`available_segmenters` to list them with their status.

    Raises
    ------
    InputError
        No segmenter of that name (the message lists those found).
    SegmentationError
        It exists but cannot run here (the message gives its reason and what to do).
    """
    return _resolve(name)[0]


def _resolve(name: str) -> tuple[Segmenter, PluginStatus]:
    found = _discover(only=name)
    if name not in found:
        others = available_segmenters()
        listing = "; ".join(f"{s.name} ({'available' if s.available else 'unavailable'})"
                            for s in others) or "none"
        raise InputError(
            f"no segmenter named {name!r} (found: {listing}); install a package that declares it "
            f"in the entry-point group {ENTRY_POINT_GROUP!r} or register it with "
            "cardiotwin.imaging.plugins.register_segmenter")
    seg, status = found[name]
    if seg is None:
        raise SegmentationError(f"segmenter {name!r} is not available: {status.reason} "
                                "(or leave it out to use the default segmentation)")
    return seg, status


# ---------------------------------------------------------------------------------------------
# running and combining


def labels_on_ct(labels: LabelMap, ct: Volume, *, spec: LabelSpec | None = None,
                 source: str = "the plug-in's labels") -> LabelMap:
    """A tool's label map as cardiotwin structures on the CT grid.

    For plug-in authors whose model writes its own label values (e.g. TotalSegmentator's
    ``aorta=52``): :func:`~cardiotwin.imaging.labels.relabel` with ``spec`` (when given), then
    :func:`~cardiotwin.imaging.labels.resample_labels` onto ``ct`` (nearest neighbour).

    Raises
    ------
    InputError
        A value of ``spec`` absent from the map, or labels that do not lie in the CT.
    """
    if spec is not None:
        labels = relabel(labels, spec, source=source)
    return resample_labels(labels, ct, source=source)


def run_segmenter(segmenter: Segmenter, ct: Volume, *, structures: Sequence[str] | None = None
                  ) -> LabelMap:
    """Run ``segmenter`` on ``ct`` and check its output.

    Parameters
    ----------
    segmenter : Segmenter
        An available segmenter (:func:`get_segmenter`).
    ct : Volume
        CT in HU.
    structures : sequence of str, optional
        The structures that must be present in the output; default: all it provides.

    Returns
    -------
    LabelMap
        Its labels on the CT grid.

    Raises
    ------
    SegmentationError
        The segmenter raised, returned something else than a LabelMap, labels outside the CT,
        or no voxel of a requested structure; the message names it.
    """
    name = getattr(segmenter, "name", type(segmenter).__name__)
    wanted = tuple(structures) if structures is not None else tuple(segmenter.structures)
    try:
        out = segmenter.segment(ct)
    except Exception as exc:  # any failure inside a plug-in becomes an error naming it
        raise SegmentationError(
            f"segmenter {name!r} failed on this CT ({type(exc).__name__}: {exc}); check its "
            "installation and weights, or leave it out to use the default segmentation") from exc
    if not isinstance(out, LabelMap):
        raise SegmentationError(f"segmenter {name!r} returned {type(out).__name__}, not a "
                                "LabelMap; it is not compatible with this cardiotwin")
    try:
        out = resample_labels(out, ct, source=f"the labels of segmenter {name!r}")
    except InputError as exc:
        raise SegmentationError(str(exc)) from exc
    missing = [s for s in wanted if s not in out.names]
    empty = [s for s in wanted if s in out.names and not out.mask(s).any()]
    if missing or empty:
        raise SegmentationError(
            f"segmenter {name!r} returned no {', '.join(missing + empty)} for this CT (its labels: "
            f"{', '.join(n for n in out.names if n != 'background')}); use the default for "
            "those structures or check the plug-in")
    return out


def combine(default: Segmentation, plugin_labels: LabelMap, *, structures: Sequence[str],
            source: str, details: Mapping[str, Any] | None = None) -> Segmentation:
    """Replace the default's ``structures`` by the plug-in's.

    Voxels the default gave one of ``structures`` become background, then every voxel of the
    plug-in's structure takes that structure's value (:data:`LABELS`), overwriting whatever
    the default had there; all other voxels keep the default's label.

    Parameters
    ----------
    default : Segmentation
        Result of :func:`~cardiotwin.imaging.segment.segment_heart` (or of a previous combine).
    plugin_labels : LabelMap
        Plug-in labels named with cardiotwin's structure names; resampled onto the default's
        grid when it differs.
    structures : sequence of str
        Structures to take from the plug-in.
    source : str
        Name recorded for those structures (the segmenter's name).
    details : mapping, optional
        More to record in this plug-in's entry of ``report["plugins"]`` (origin, time).

    Returns
    -------
    Segmentation
        Same thresholds; ``report["structure_sources"]`` maps every structure present to
        ``"default"`` or the plug-in's name; ``report["plugins"]`` lists each plug-in applied,
        its structures, their volumes (mL) and the voxels it took from other structures.

    Raises
    ------
    InputError
        A structure that is not a cardiotwin structure, or not in ``plugin_labels``.
    """
    structures = tuple(structures)
    bad = [s for s in structures if s not in STRUCTURES]
    if not structures or bad:
        raise InputError(f"structures {list(structures)}: give some of " + ", ".join(STRUCTURES))
    missing = [s for s in structures if s not in plugin_labels.names]
    if missing:
        raise InputError(f"the labels of {source!r} have no {', '.join(missing)} (they have "
                         + ", ".join(n for n in plugin_labels.names if n != "background") + ")")
    grid = default.labels.volume
    plugin_labels = resample_labels(plugin_labels, grid, source=f"the labels of {source!r}")
    base = default.labels.array
    out = base.copy()
    old_names = {v: n for n, v in default.labels.names.items()}
    for s in structures:
        if s in default.labels.names:
            out[base == default.labels.names[s]] = LABELS["background"]
    took: dict[str, dict[str, int]] = {}
    volumes: dict[str, float] = {}
    ml = grid.voxel_volume_mm3 * 1e-3
    for s in structures:
        m = plugin_labels.mask(s)
        prev = out[m]
        vals, counts = np.unique(prev[prev != LABELS["background"]], return_counts=True)
        took[s] = {old_names.get(int(v), str(int(v))): int(c)
                   for v, c in zip(vals, counts, strict=True) if int(v) != LABELS[s]}
        out[m] = LABELS[s]
        volumes[s] = float(m.sum()) * ml
    names = dict(default.labels.names)
    names.update({s: LABELS[s] for s in structures})
    present = set(np.unique(out).tolist())
    names = {n: v for n, v in sorted(names.items(), key=lambda kv: kv[1])
             if n == "background" or v in present}
    labels = LabelMap(grid.with_array(out.astype(base.dtype, copy=False)), names)
    sources = dict(default.report.get("structure_sources")
                   or {n: DEFAULT_SOURCE for n in default.labels.names if n != "background"})
    sources.update({s: source for s in structures})
    sources = {n: sources.get(n, DEFAULT_SOURCE) for n in names if n != "background"}
    entry = {"name": source, "structures": list(structures), "volume_ml": volumes,
             "took_voxels_from": took, **(details or {})}
    report = {**default.report, "structure_sources": sources,
              "plugins": [*default.report.get("plugins", []), entry]}
    logger.info("segmenter %s: %s", source,
                ", ".join(f"{s} {v:.1f} mL" for s, v in volumes.items()))
    return Segmentation(labels, default.blood_threshold_hu, default.calcium_threshold_hu, report)


def parse_segmenter_choice(choice: str) -> tuple[str, tuple[str, ...] | None]:
    """Read ``"NAME"`` or ``"NAME:structure+structure"`` (e.g. ``"totalseg:aorta+myocardium"``).

    Returns the name and the structures (None: all the segmenter provides).

    Raises
    ------
    InputError
        An empty name or an unknown structure.
    """
    name, sep, rest = choice.partition(":")
    name = name.strip()
    if not name:
        raise InputError(f"segmenter choice {choice!r}: give NAME or NAME:structure+structure")
    if not sep:
        return name, None
    structures = tuple(s.strip() for s in rest.split("+") if s.strip())
    bad = [s for s in structures if s not in STRUCTURES]
    if not structures or bad:
        raise InputError(f"segmenter choice {choice!r}: unknown structure(s) {bad or [rest]}; "
                         "use some of " + ", ".join(STRUCTURES))
    return name, structures


def segment_with_plugins(ct: Volume, *, use: Sequence[str] = (),
                         settings: SegmentationSettings | None = None,
                         default: Segmentation | None = None) -> Segmentation:
    """The default segmentation with the structures of the chosen segmenters in its place.

    Parameters
    ----------
    ct : Volume
        Contrast CT in HU.
    use : sequence of str, keyword-only
        Segmenters to apply, in order (a later one overrides an earlier one for a structure
        both provide): ``"NAME"`` for every structure it provides, or
        ``"NAME:aorta+myocardium"`` for some of them (:func:`parse_segmenter_choice`).
    settings : SegmentationSettings, keyword-only
        Options of the default :func:`~cardiotwin.imaging.segment.segment_heart` (its
        defaults when None).
    default : Segmentation, optional
        An already computed default segmentation of ``ct`` (it is not recomputed).

    Returns
    -------
    Segmentation
        As :func:`combine`: ``report["structure_sources"]`` says where each structure came from;
        each entry of ``report["plugins"]`` also has its ``origin`` and ``time_s``.

    Raises
    ------
    InputError
        A malformed choice, an unknown segmenter (the message lists those found), or a
        structure the segmenter does not provide.
    SegmentationError
        The default segmentation fails, or a segmenter is unavailable (its reason and what to
        do) or fails on this CT (naming it).
    """
    choices = [parse_segmenter_choice(c) for c in use]
    chosen: list[tuple[str, Segmenter, PluginStatus, tuple[str, ...]]] = []
    for name, structures in choices:  # resolve every plug-in before the default runs
        seg, status = _resolve(name)
        provided = tuple(seg.structures)
        if structures is None:
            structures = provided
        extra = [s for s in structures if s not in provided]
        if extra:
            raise InputError(f"segmenter {name!r} does not provide {', '.join(extra)}; it "
                             "provides " + ", ".join(provided))
        chosen.append((name, seg, status, structures))
    if default is None:
        default = segment_heart(ct, settings=settings or SegmentationSettings())
    result = default
    if not chosen:
        return result
    for name, seg, status, structures in chosen:
        t0 = time.perf_counter()
        plugin_labels = run_segmenter(seg, ct, structures=structures)
        details = {"origin": status.origin, "detail": status.reason,
                   "time_s": time.perf_counter() - t0}
        result = combine(result, plugin_labels, structures=structures, source=name,
                         details=details)
    return result


def structure_sources(segmentation: Segmentation) -> Mapping[str, str]:
    """Structure → ``"default"`` or the segmenter that provided it."""
    return segmentation.report.get("structure_sources") or {
        n: DEFAULT_SOURCE for n in segmentation.labels.names if n != "background"}
