"""Restart checkpoints of the pulsatile solver.

A checkpoint is a directory ``step_NNNNNN`` with ``state.json`` (step, scalar state, format) and
the fields, either adios4dolfinx (``state.bp``, in the mesh's input ordering: a run restarts with
any number of MPI ranks) or one ``.npz`` per rank (same mesh, same number of ranks). It is
written into ``<dir>.tmp`` and renamed when complete, so a directory with ``state.json`` is
always whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_FIELDS", "checkpoint_format", "checkpoint_path",
           "latest_checkpoint", "mesh_fingerprint", "prune_checkpoints", "read_checkpoint",
           "write_checkpoint"]


CHECKPOINT_FIELDS = ("velocity", "velocity_previous", "pressure")
"""Names of the fields stored in a checkpoint, in the order of the solver's Functions."""

CHECKPOINT_DIR = "checkpoints"
"""Subdirectory of a run's ``out_dir`` that holds its checkpoints."""

_STEP_DIR = re.compile(r"step_(\d+)")


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    """The checkpoint directory of ``step`` in a run's ``out_dir``: ``checkpoints/step_NNNNNN``."""
    return Path(out_dir) / CHECKPOINT_DIR / f"step_{step:06d}"


def latest_checkpoint(out_dir: str | Path, *, before_step: int) -> Path | None:
    """The newest complete checkpoint of a run before a step, or None.

    Parameters
    ----------
    out_dir : the ``out_dir`` the run was given (its checkpoints are in ``out_dir/checkpoints``).
    before_step : only checkpoints of a step ``< before_step`` count (e.g. the run's number of
        steps: a checkpoint at or after the end cannot be continued).

    Returns
    -------
    Path or None
        The ``step_NNNNNN`` directory with the largest step that has its ``state.json`` (written
        last, so the checkpoint is whole), or None when there is none.
    """
    ck_dir = Path(out_dir) / CHECKPOINT_DIR
    if not ck_dir.is_dir():
        return None
    found = []
    for d in ck_dir.iterdir():
        m = _STEP_DIR.fullmatch(d.name)
        if m and int(m.group(1)) < before_step and (d / "state.json").is_file():
            found.append((int(m.group(1)), d))
    return max(found)[1] if found else None


def prune_checkpoints(ck_dir: Path, *, keep: int) -> None:
    """Delete all but the newest ``keep`` (>= 1) checkpoint directories of ``ck_dir``.

    Call on one rank only (the solver calls it on rank 0).
    """
    done = sorted(ck_dir.glob("step_[0-9]*[0-9]"))
    for old_ck in done[:-keep]:
        shutil.rmtree(old_ck)


def _adios4dolfinx():
    """The adios4dolfinx module when it can run under MPI (an MPI-enabled adios2), else None."""
    try:
        import adios2
        import adios4dolfinx
    except ImportError:
        return None
    return adios4dolfinx if getattr(adios2, "is_built_with_mpi", False) else None


def _require_adios4dolfinx():
    a4d = _adios4dolfinx()
    if a4d is None:
        raise InputError("adios4dolfinx checkpoints need adios4dolfinx and an MPI-enabled adios2 "
                         "Python module; build them into the venv with "
                         "`bash scripts/build-adios2.sh .venv` (or use checkpoint_format='npz')")
    return a4d


def checkpoint_format(requested: str) -> str:
    """Resolve ``PulsatileSettings.checkpoint_format`` to "adios4dolfinx" or "npz"."""
    if requested == "npz":
        return "npz"
    if requested == "adios4dolfinx":
        _require_adios4dolfinx()
        return "adios4dolfinx"
    if _adios4dolfinx() is not None:
        return "adios4dolfinx"
    logger.info("adios4dolfinx with MPI adios2 is not installed (scripts/build-adios2.sh): "
                "checkpoints are per-rank .npz files (restart with the same number of ranks)")
    return "npz"


def _layout_signature(funcs) -> str:
    h = hashlib.sha256()
    for f in funcs:
        x = f.function_space.tabulate_dof_coordinates()
        h.update(np.round(x, 12).tobytes())
    return h.hexdigest()


def mesh_fingerprint(msh) -> dict[str, Any]:
    """Partition-independent summary of a mesh: global cell and node counts and the first two
    moments of the node coordinates."""
    n_own = msh.geometry.index_map().size_local
    x = msh.geometry.x[:n_own, :msh.geometry.dim]
    cells = msh.topology.index_map(msh.topology.dim).size_global
    return {"cells": int(cells), "nodes": int(msh.geometry.index_map().size_global),
            "x_sum": msh.comm.allreduce(x.sum(axis=0), op=MPI.SUM).tolist(),
            "x2_sum": float(msh.comm.allreduce(float((x * x).sum()), op=MPI.SUM))}


def _same_mesh(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["cells"] == b["cells"] and a["nodes"] == b["nodes"]
            and np.allclose(a["x_sum"], b["x_sum"], rtol=1e-9, atol=1e-12)
            and math.isclose(a["x2_sum"], b["x2_sum"], rel_tol=1e-9, abs_tol=1e-15))


def write_checkpoint(path: Path, comm, step: int, funcs, wss, extra: dict, *,
                      fmt: str) -> None:
    """Write atomically: into ``<path>.tmp`` and rename when every rank has finished."""
    tmp = path.with_name(path.name + ".tmp")
    if comm.rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    comm.barrier()
    meta: dict[str, Any] = {"step": step, "format": fmt, "mpi_size": comm.size, "state": extra}
    if fmt == "adios4dolfinx":
        import adios2

        a4d = _require_adios4dolfinx()
        fields = list(zip(CHECKPOINT_FIELDS, funcs, strict=True))
        if wss is not None:
            fields += [(f.name, f) for f in wss.functions()]
            meta["wss_time"] = wss.time
        for k, (name, f) in enumerate(fields):
            a4d.write_function_on_input_mesh(
                tmp / "state.bp", f, name=name, time=0.0,
                mode=adios2.Mode.Write if k == 0 else adios2.Mode.Append)
        meta["mesh"] = mesh_fingerprint(funcs[0].function_space.mesh)
    else:
        arrays = {f"f{i}": f.x.array for i, f in enumerate(funcs)}
        if wss is not None:
            arrays.update(wss.state())
        np.savez(tmp / f"rank{comm.rank:04d}.npz", **arrays)
        meta["layout"] = comm.gather(_layout_signature(funcs), root=0)
    comm.barrier()
    if comm.rank == 0:
        (tmp / "state.json").write_text(json.dumps(meta))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    comm.barrier()


def read_checkpoint(path: Path, comm, funcs, wss, msh) -> tuple[int, dict]:
    meta_file = path / "state.json"
    if not meta_file.is_file():
        raise InputError(f"restart_from={path}: no state.json there; give a checkpoint directory "
                         "written with checkpoint_every (out_dir/checkpoints/step_<n>)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format", "npz") == "adios4dolfinx":
        a4d = _require_adios4dolfinx()
        if not _same_mesh(meta["mesh"], mesh_fingerprint(msh)):
            raise InputError(f"checkpoint {path} was written on another mesh ({meta['mesh']['cells']} "
                             "cells); restart on the mesh the run started with")
        fields = list(zip(CHECKPOINT_FIELDS, funcs, strict=True))
        wss_fields = wss.functions() if wss is not None and "wss_time" in meta else ()
        for name, f in fields + [(f.name, f) for f in wss_fields]:
            a4d.read_function(path / "state.bp", f, time=0.0, name=name)
        if wss_fields:
            wss.load_functions(*wss_fields, meta["wss_time"])
        return int(meta["step"]), meta["state"]
    if meta["mpi_size"] != comm.size:
        raise InputError(f"checkpoint {path} was written with {meta['mpi_size']} MPI ranks; "
                         f"restart with the same number (now {comm.size}), or write adios4dolfinx "
                         "checkpoints (scripts/build-adios2.sh), which restart on any number")
    if meta["layout"][comm.rank] != _layout_signature(funcs):
        raise InputError(f"checkpoint {path} does not match this mesh/partition (dof layout "
                         "differs); restart on the same mesh with the same number of ranks")
    data = np.load(path / f"rank{comm.rank:04d}.npz")
    for i, f in enumerate(funcs):
        f.x.array[:] = data[f"f{i}"]
    if wss is not None and "wss_sum_vec" in data:
        wss.load(data)
    return int(meta["step"]), meta["state"]
