"""Shared, session-scoped fixtures of the imaging tests (phantoms are built once per session).

Also the independent DICOM tools the imaging tests compare against (``dcm2niix``, ``dciodvfy``),
installed by ``bash scripts/install-test-tools.sh`` (``make test`` runs it), and helpers that
read dcm2niix's NIfTI into the LPS ``[k, j, i]`` convention of :class:`Volume`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cardiotwin.imaging.phantom import Phantom, PhantomParameters, make_phantom

#: Coarse spacing keeps the imaging tests fast (~0.5 s per phantom) while every structure stays
#: at least two voxels thick.
COARSE_SPACING_MM = (1.5, 1.5, 1.5)


@pytest.fixture(scope="session")
def coarse_phantom() -> Phantom:
    """The default phantom at 1.5 mm isotropic spacing, seed 0."""
    return make_phantom(PhantomParameters(spacing_mm=COARSE_SPACING_MM), seed=0)


@pytest.fixture(scope="session")
def small_phantom() -> Phantom:
    """A 2.5 × 2.0 × 3.0 mm (anisotropic) phantom: few small slices for DICOM round trips."""
    return make_phantom(PhantomParameters(spacing_mm=(2.5, 2.0, 3.0)), seed=7)


# ---------------------------------------------------------------------------------------------
# independent tools
# ---------------------------------------------------------------------------------------------

#: the bin folder of the running venv (where scripts/install-test-tools.sh puts the PyPI tools)
_VENV_BIN = Path(sys.executable).parent
_INSTALL_HINT = "run `bash scripts/install-test-tools.sh` (make test does this)"
#: dcm2niix releases before this one write a wrong sform for gantry-tilted CT
#: (rordenlab/dcm2niix issue 697, fixed in v1.0.20230411); Debian 12 ships v1.0.20220720.
DCM2NIIX_MIN_RELEASE = 20230411


def _find_tool(name: str) -> list[Path]:
    found = [_VENV_BIN / name] if (_VENV_BIN / name).is_file() else []
    on_path = shutil.which(name)
    if on_path and Path(on_path) not in found:
        found.append(Path(on_path))
    return found


def _require_tool(name: str) -> list[Path]:
    """Every ``name`` found (venv first, then PATH); the test fails saying how to install it."""
    found = _find_tool(name)
    if not found:
        pytest.fail(f"{name} not found: {_INSTALL_HINT}", pytrace=False)
    return found


def dcm2niix_release(exe: str | Path) -> int:
    """The release date of a dcm2niix binary as an integer ``YYYYMMDD`` (0 if unknown)."""
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"v1\.0\.(\d{8})", out.stdout + out.stderr)
    return int(m.group(1)) if m else 0


@pytest.fixture(scope="session")
def dcm2niix() -> Path:
    """Path of a dcm2niix binary recent enough to be a geometry reference (venv first, then PATH)."""
    found = _require_tool("dcm2niix")
    for exe in found:
        if dcm2niix_release(exe) >= DCM2NIIX_MIN_RELEASE:
            return exe
    pytest.fail(
        f"dcm2niix found ({', '.join(map(str, found))}) but older than v1.0.{DCM2NIIX_MIN_RELEASE}, "
        f"whose gantry-tilt geometry is wrong: {_INSTALL_HINT} (it adds the PyPI wheel to .venv)",
        pytrace=False)


@pytest.fixture(scope="session")
def dcm2niix_debian() -> Path:
    """The distribution's dcm2niix (Debian package ``dcm2niix``, /usr/bin), whatever its release."""
    exe = Path("/usr/bin/dcm2niix")
    if not exe.is_file():
        pytest.fail("the Debian dcm2niix (/usr/bin/dcm2niix) is not installed: as root, "
                    f"`apt-get install dcm2niix` or {_INSTALL_HINT}", pytrace=False)
    return exe


@pytest.fixture(scope="session")
def dciodvfy() -> Path:
    """Path of David Clunie's DICOM validator ``dciodvfy`` (dicom3tools)."""
    return _require_tool("dciodvfy")[0]


@pytest.fixture(scope="session")
def segimage2itkimage() -> Path:
    """Path of dcmqi's ``segimage2itkimage`` (the SEG reader of 3D Slicer's QuantitativeReporting)."""
    return _require_tool("segimage2itkimage")[0]


def run_dcm2niix(exe: Path, source: Path | list[Path], out_dir: Path, name: str) -> list[Path]:
    """Convert ``source`` (a folder, or files copied into one) with dcm2niix; return its NIfTIs.

    Options: ``-z n`` (plain .nii), ``-b y`` (JSON sidecar), ``-f name``; a single file is
    converted with ``-s y``. The outputs are sorted by name (``name.nii``, ``name_Tilt_1.nii``...).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(exe), "-z", "n", "-b", "y", "-f", name, "-o", str(out_dir)]
    if isinstance(source, Path) and source.is_file():
        cmd += ["-s", "y"]
    elif isinstance(source, list):
        folder = out_dir / f"{name}_in"
        folder.mkdir()
        for f in source:
            shutil.copy(f, folder / f.name)
        source = folder
    proc = subprocess.run([*cmd, str(source)], capture_output=True, text=True, check=False)
    outputs = sorted(out_dir.glob(f"{name}*.nii"))
    assert proc.returncode == 0 and outputs, f"dcm2niix failed on {source}:\n{proc.stdout}{proc.stderr}"
    return outputs


def read_nifti_lps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI's voxels (scl_slope/scl_inter applied, float64, ``[x, y, z]``) and LPS affine.

    The sform maps voxel ``(x, y, z)`` to RAS mm (NIfTI-1 standard, sform_code 1 = scanner);
    LPS = diag(-1, -1, 1) RAS.
    """
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float64)  # the array proxy applies scl_slope/scl_inter
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine


def reorient_like(data_xyz: np.ndarray, affine_lps: np.ndarray, target_direction: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip a ``[x, y, z]`` array so its axes follow ``target_direction``'s columns.

    dcm2niix flips the row order (``y`` runs against DICOM's column cosine) to make its NIfTI
    "RAS-ish"; this undoes any such flips and axis permutations. Returns the array indexed
    ``[k, j, i]`` like :class:`Volume` and the 4x4 LPS affine of ``(i, j, k)``.
    """
    data = np.asarray(data_xyz)
    aff = np.array(affine_lps, dtype=float)
    cols = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
    perm, flips = [], []
    for c in range(3):
        dots = cols.T @ target_direction[:, c]
        a = int(np.argmax(np.abs(dots)))
        perm.append(a)
        flips.append(dots[a] < 0)
    assert sorted(perm) == [0, 1, 2], f"axes of {cols.round(3).tolist()} do not match the target"
    for c, a in enumerate(perm):
        if flips[c]:
            n = data.shape[a]
            aff[:3, 3] = aff[:3, 3] + aff[:3, a] * (n - 1)
            aff[:3, a] = -aff[:3, a]
            data = np.flip(data, axis=a)
    data = np.transpose(data, perm)  # now [i, j, k]
    new = np.eye(4)
    new[:3, :3] = aff[:3, perm]
    new[:3, 3] = aff[:3, 3]
    return np.ascontiguousarray(np.transpose(data, (2, 1, 0))), new


def affine_parts(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Origin (mm), spacing (mm) and unit direction columns of a 4x4 voxel-to-LPS affine."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return affine[:3, 3].copy(), spacing, affine[:3, :3] / spacing


def rotation(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    """Direction matrix Rz @ Ry @ Rx for rotations (degrees) about x, y, z (oblique test grids)."""
    ax, ay, az = np.radians([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx
