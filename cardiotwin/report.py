"""HTML report of a twin and a rehearsal: tables, plots and links to the 3-D result files.

The report is one self-contained HTML file (plots embedded as PNG) next to the VTU/XDMF files it
links, so it can be mailed or archived with the run.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cardiotwin import __version__  # noqa: E402
from cardiotwin.devices.sizing import SizingReport  # noqa: E402
from cardiotwin.geometry.landmarks import AorticRootLandmarks  # noqa: E402
from cardiotwin.study.results import FlowSummary, RehearsalComparison  # noqa: E402
from cardiotwin.twin.assimilate import TwinEstimate  # noqa: E402
from cardiotwin.twin.state import PatientTwin  # noqa: E402


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plot_gradients(before: FlowSummary, after: FlowSummary, label_after: str) -> str:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = ["peak gradient", "net pressure loss"]
    x = np.arange(len(names))
    ax.bar(x - 0.18, [before.peak_gradient_mmhg, before.net_gradient_mmhg], 0.36,
           label="native valve", color="#c0392b")
    ax.bar(x + 0.18, [after.peak_gradient_mmhg, after.net_gradient_mmhg], 0.36, label=label_after,
           color="#2471a3")
    ax.set_xticks(x, names)
    ax.set_ylabel("mmHg")
    ax.set_title("Transvalvular pressure drop at mean systolic flow")
    ax.axhline(40, color="grey", lw=0.8, ls="--")
    ax.text(1.45, 41, "severe AS (mean ≥ 40)", ha="right", fontsize=7, color="grey")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_profile(before: FlowSummary, after: FlowSummary, label_after: str) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(before.pressure_profile_mm, before.pressure_profile_mmhg, "o-", ms=3,
            color="#c0392b", label="native valve")
    ax.plot(after.pressure_profile_mm, after.pressure_profile_mmhg, "s-", ms=3,
            color="#2471a3", label=label_after)
    ax.axvline(0, color="k", lw=0.8)
    ax.text(0.5, ax.get_ylim()[1], "annulus", va="top", fontsize=7)
    ax.set_xlabel("distance along the valve axis from the annulus (mm)")
    ax.set_ylabel("section-mean pressure (mmHg)")
    ax.set_title("Pressure along the aortic root")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_outlets(before: FlowSummary, after: FlowSummary, label_after: str) -> str:
    names = list(before.outlet_flows_l_min)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    x = np.arange(len(names))
    ax.bar(x - 0.18, [before.outlet_flows_l_min[n] for n in names], 0.36, label="native valve",
           color="#c0392b")
    ax.bar(x + 0.18, [after.outlet_flows_l_min.get(n, np.nan) for n in names], 0.36,
           label=label_after, color="#2471a3")
    ax.set_xticks(x, [n.removeprefix("outlet:").replace("_", " ") for n in names], fontsize=7,
                  rotation=15)
    ax.set_ylabel("L/min (during systole)")
    ax.set_title("Outlet flows")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_sizing(sizing: SizingReport) -> str:
    sizes = sizing.sizes
    fig, ax = plt.subplots(figsize=(5, 3.2))
    d = [s.nominal_diameter_mm for s in sizes]
    a = [s.area_oversizing_pct for s in sizes]
    colors = ["#27ae60" if s.nominal_diameter_mm == sizing.recommended_mm else "#95a5a6"
              for s in sizes]
    ax.bar([f"{v:g} mm" for v in d], a, color=colors)
    ax.axhspan(0, 10, color="#27ae60", alpha=0.08)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("area oversizing (%)")
    ax.set_title(f"Sizing on annulus area {sizing.annulus_area_mm2:.0f} mm² (green: recommended)")
    return _png(fig)


def plot_surface(stl_path: Path, landmarks: AorticRootLandmarks, *, max_faces: int = 6000) -> str | None:
    """Matplotlib rendering of the lumen surface with the annulus centre and normal."""
    import trimesh

    if not Path(stl_path).exists():
        return None
    mesh = trimesh.load(stl_path, force="mesh")
    faces = mesh.faces
    if len(faces) > max_faces:
        faces = faces[np.linspace(0, len(faces) - 1, max_faces).astype(int)]
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="3d")
    v = mesh.vertices
    ax.plot_trisurf(v[:, 0], v[:, 1], v[:, 2], triangles=faces, color="#e6b0aa", alpha=0.35,
                    linewidth=0)
    c = np.asarray(landmarks.annulus_centre_mm)
    n = np.asarray(landmarks.annulus_normal)
    ax.scatter(*c, color="k", s=20)
    ax.quiver(*c, *(25 * n), color="k")
    ax.set_xlabel("x (mm, L)")
    ax.set_ylabel("y (mm, P)")
    ax.set_zlabel("z (mm, S)")
    ax.set_title("Fluid domain (LPS) with annulus centre and axis")
    ax.set_box_aspect(np.ptp(v, axis=0))
    return _png(fig)


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}
th{background:#f4f6f7} td:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px} .grid img{max-width:520px;border:1px solid #eee}
.warn{color:#a04000} code{background:#f4f6f7;padding:1px 4px}
"""


def _read_traces(path: str | Path) -> dict[str, np.ndarray]:
    import csv

    with Path(path).open(newline="") as fh:
        rows = list(csv.reader(fh))
    head, data = rows[0], np.array(rows[1:], dtype=float)
    return {name: data[:, i] for i, name in enumerate(head)}


def write_cycle_plot(out_png: str | Path, before_csv: str | Path, after_csv: str | Path, *,
                     label_after: str) -> Path:
    """Plot a pulsatile before/after comparison from two ``traces.csv`` of ``run_cycle``.

    Three panels over the cycle: inflow; LV-outflow (inlet) and aortic (outlet, flow-weighted) pressure;
    transvalvular gradient. Writes a PNG and returns its path.
    """
    runs = [("native valve", "#c0392b", _read_traces(before_csv)),
            (label_after, "#2471a3", _read_traces(after_csv))]
    fig, axes = plt.subplots(3, 1, figsize=(6.5, 7.5), sharex=True)
    for name, colour, tr in runs:
        t_ms = 1e3 * tr["t_s"]
        axes[0].plot(t_ms, tr["inflow_ml_s"], color=colour, label=name)
        axes[1].plot(t_ms, tr["inlet_pressure_mmhg"], color=colour, label=f"LV outflow, {name}")
        axes[1].plot(t_ms, tr["aortic_pressure_mmhg"], color=colour, ls="--", label=f"aorta, {name}")
        if "valve_gradient_mmhg" in tr:
            axes[2].plot(t_ms, tr["valve_gradient_mmhg"], color=colour, label=name)
    axes[0].set_ylabel("inflow (mL/s)")
    axes[0].set_title("Pulsatile flow over the cardiac cycle")
    axes[1].set_ylabel("pressure (mmHg)")
    axes[2].set_ylabel("transvalvular\ngradient (mmHg)")
    axes[2].set_xlabel("time from the start of ejection (ms)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out_png


def _gate_section(twin: PatientTwin) -> list[str]:
    """The anatomy quality gate the twin passed: status and every check with its range."""
    gate = twin.quality_gate
    if gate is None:
        return []
    rows = [{"check": c.name, "status": c.status, "value": c.value, "unit": c.unit,
             "expected": c.expected, "message": c.message} for c in gate.checks]
    return [f"<h3>Anatomy quality gate: {html.escape(gate.status)}</h3>",
            _table(rows, ["check", "status", "value", "unit", "expected", "message"])]


_MEASUREMENTS = (
    ("annulus_diameter_mm", "Annulus diameter (area-derived)"),
    ("annulus_perimeter_diameter_mm", "Annulus diameter (perimeter-derived)"),
    ("annulus_area_mm2", "Annulus area (mm²)"),
    ("annulus_perimeter_mm", "Annulus perimeter"),
    ("lvot_diameter_mm", "LVOT diameter"),
    ("sinus_diameter_mm", "Sinus of Valsalva diameter"),
    ("valve_orifice_area_mm2", "Native orifice area (mm²)"),
    ("calcium_volume_mm3", "Valve calcium volume (mm³)"),
)


def live_section(estimate: TwinEstimate | None) -> list[str]:
    """HTML of the live twin: data age, STALE / DRIFT flags and the estimate with ± 1 SD."""
    if estimate is None:
        return []
    age = ("no data" if estimate.data_age_s is None
           else f"{estimate.data_age_s / 60.0:.1f} min (last observation "
                f"{html.escape(str(estimate.last_observation_utc))})")
    out = ["<h2>Live twin (monitoring)</h2>",
           f"<p>As of {html.escape(estimate.as_of_utc)}: {estimate.n_observations} observations "
           f"assimilated; data age {age}.</p>"]
    if estimate.stale:
        out.append(f"<p class='warn'>STALE: {html.escape(estimate.stale_reason)}; the spread "
                   "has grown with the data age.</p>")
    if estimate.drift:
        out.append("<p class='warn'>DRIFT since the last 3-D run: "
                   + html.escape("; ".join(estimate.drift_reasons))
                   + ". Run a new 3-D simulation before using its gradients.</p>")
    rows = [{"quantity": e.name.replace("_", " "), "estimate": e.mean, "± 1 SD": e.sd,
             "unit": e.unit} for e in estimate.estimates.values()]
    out.append(_table(rows, ["quantity", "estimate", "± 1 SD", "unit"]))
    return out


def device_section(simulation: Any | None) -> list[str]:
    """HTML of a device simulation (:class:`cardiotwin.workflows.DeviceSimulation`): the frame in
    the wall, the complications with their notes and warnings, and the contact-pressure map."""
    if simulation is None:
        return []
    mech, comp = simulation.mechanics, simulation.complications
    out = [f"<h2>Device in the wall: {simulation.placement.nominal_diameter_mm:g} mm "
           f"({html.escape(mech.model)} wall, mechanics and complications)</h2>",
           "<p>The frame expands towards its nominal diameter against a 2 mm wall built on the "
           "root (frictionless contact, dolfinx); methods, sources and limits in "
           "<code>docs/devices.md</code>. Stiffness values are modelling assumptions.</p>",
           _table([{"quantity": k, "value": v} for k, v in mech.rows() + comp.rows()],
                  ["quantity", "value"])]
    out += [f"<p class='warn'>⚠ {html.escape(w)}</p>" for w in mech.warnings]
    out += [f"<p>{html.escape(n)}</p>" for n in comp.notes]
    png = simulation.files.get("contact_png")
    if png and Path(png).is_file():
        b64 = base64.b64encode(Path(png).read_bytes()).decode()
        out.append(f"<img src='data:image/png;base64,{b64}'/>")
    return out


def write_report(out_path: str | Path, *, twin: PatientTwin, rehearsal: RehearsalComparison,
                 truth: AorticRootLandmarks | None = None,
                 timings_s: dict[str, float] | None = None,
                 live: TwinEstimate | None = None, device: Any | None = None) -> Path:
    """Write the HTML report of a twin and one steady rehearsal.

    Parameters
    ----------
    out_path : the ``.html`` file to write (its folder receives nothing else).
    twin : the twin the rehearsal ran on.
    rehearsal : the before/after comparison of :func:`cardiotwin.workflows.rehearse`.
    truth : optional phantom ground truth shown beside the measurements.
    timings_s : wall-clock times of the stages.
    live : the twin's monitoring estimate (data age, stale and drift flags, spread), shown when
        given (:func:`live_section`).
    device : a device simulation (mechanics and complications), shown when given
        (:func:`device_section`).
    """
    out_path = Path(out_path)
    lms = twin.landmarks
    before, after = rehearsal.before, rehearsal.after
    pl = rehearsal.placement
    label_after = f"{rehearsal.nominal_diameter_mm:g} mm valve"
    meas_rows = []
    for key, name in _MEASUREMENTS:
        row = {"measurement": name, "cardiotwin": getattr(lms, key, None)}
        if truth:
            row["phantom truth"] = getattr(truth, key, None)
        meas_rows.append(row)
    cmp_rows = [{"metric": r.metric, "before": r.before, "after": r.after, "unit": r.unit}
                for r in rehearsal.rows()]
    mesh = twin.mesh or {}
    baseline = next((r for r in twin.results if r.get("label") == "baseline"), {})
    files = {**{f"baseline {k}": v for k, v in baseline.get("files", {}).items()},
             **{f"device {k}": v for k, v in rehearsal.files.items()}}
    sizing = SizingReport.from_dict(twin.anatomy["sizing"])
    warnings = rehearsal.sizing_warnings
    surf = None
    if mesh.get("work_dir"):
        surf = plot_surface(Path(mesh["work_dir"]) / "lumen_surface.stl", lms)
    imgs = [plot_gradients(before, after, label_after), plot_profile(before, after, label_after),
            plot_outlets(before, after, label_after), plot_sizing(sizing)]
    if surf:
        imgs.insert(0, surf)
    sizing_rows = [{"nominal_diameter_mm": s.nominal_diameter_mm,
                    "area_oversizing_pct": s.area_oversizing_pct,
                    "perimeter_oversizing_pct": s.perimeter_oversizing_pct,
                    "in_chart_range": s.in_chart_range, "gap_area_mm2": s.gap_area_mm2}
                   for s in sizing.sizes]
    parts = [
        f"<html><head><meta charset='utf-8'><title>cardiotwin report {html.escape(twin.pseudonym)}"
        f"</title><style>{CSS}</style></head><body>",
        f"<h1>cardiotwin report — {html.escape(twin.pseudonym)} (twin v{twin.version})</h1>",
        "<p>Steady Navier–Stokes at mean systolic flow with calibrated resistance outlets; valve and "
        "device as Brinkman regions. Stage-1 model: see <code>docs/validation.md</code> for what has been "
        "verified and how far these numbers can be trusted.</p>",
        "<h2>Before / after</h2>",
        _table(cmp_rows, ["metric", "before", "after", "unit"]),
        "<div class='grid'>" + "".join(f"<img src='data:image/png;base64,{i}'/>" for i in imgs) + "</div>",
        "<h2>Anatomy</h2>",
        _table(meas_rows, ["measurement", "cardiotwin"] + (["phantom truth"] if truth else [])),
        *_gate_section(twin),
        *live_section(live),
        "<h2>Device</h2>",
        _table([{"property": k, "value": v} for k, v in pl.items()
                if not isinstance(v, (list, tuple, dict))], ["property", "value"]),
        "".join(f"<p class='warn'>⚠ {html.escape(w)}</p>" for w in warnings),
        *device_section(device),
        "<h2>Sizing (all sizes)</h2>",
        _table(sizing_rows, ["nominal_diameter_mm", "area_oversizing_pct",
                                 "perimeter_oversizing_pct", "in_chart_range", "gap_area_mm2"]),
        "<h2>Mesh</h2>",
        _table([{"property": k, "value": v} for k, v in
                {"cells": mesh.get("n_cells"), "vertices": mesh.get("n_vertices"),
                 **(mesh.get("quality") or {})}.items()], ["property", "value"]),
        "<h2>3-D results (open in ParaView)</h2><ul>",
        "".join(f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>" for k, v in files.items()),
        "</ul>",
    ]
    if timings_s:
        parts += ["<h2>Timings</h2>",
                  _table([{"stage": k, "seconds": v} for k, v in timings_s.items()], ["stage", "seconds"])]
    parts += ["<h2>Provenance</h2>",
              f"<pre>{html.escape(json.dumps(twin.provenance, indent=1, default=str))}</pre>",
              f"<p>cardiotwin {__version__}</p></body></html>"]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(out_path)
    return out_path
