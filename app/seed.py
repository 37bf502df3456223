"""Seed a store for the app: the default users and the demo twin. Idempotent.

Run::

    python -m app.seed --store out/demo/store

Default users (created only if missing; change the passwords for anything but a demo)::

    username    password         role
    clinician   demo-clinician   clinician         (patients, rehearsal)
    officer     demo-officer     privacy_officer   (audit log)

If the store holds no twin yet, the demo twin is built exactly as ``cardiotwin demo`` builds it:
the embedded CT phantom (seed 0) is written as a DICOM series to a temporary folder and passed to
:func:`cardiotwin.workflows.build_twin` (segmentation, landmarks, mesh, baseline flow), acting as
the operating-system user in the clinician role (client ``app.seed``). A store that already has a
twin is left as it is.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_USERS: tuple[tuple[str, str, str], ...] = (
    ("clinician", "demo-clinician", "clinician"),
    ("officer", "demo-officer", "privacy_officer"),
)
"""(username, password, role) of the users :func:`seed_store` creates if missing."""

CLIENT = "app.seed"


@dataclass(frozen=True)
class SeedReport:
    """What :func:`seed_store` did."""

    users_added: tuple[str, ...]
    built_pseudonym: str | None
    pseudonyms: tuple[str, ...]
    build_time_s: float


def _print_progress(fraction: float, message: str) -> None:
    print(f"  [{100 * fraction:3.0f}%] {message}", flush=True)


def seed_store(root: str | Path, *, spacing_mm: float = 1.0, phantom_seed: int = 0,
               h_max_mm: float = 3.0, h_min_mm: float = 1.2, progress=_print_progress) -> SeedReport:
    """Create the default users if missing and build the demo twin if the store has no twin.

    Parameters
    ----------
    root : path
        Store folder (created if missing).
    spacing_mm : float
        Voxel size of the phantom CT, mm (the demo uses 1.0; tests use 1.5).
    phantom_seed : int
        Random seed of the phantom (noise, calcium).
    h_max_mm, h_min_mm : float
        Tetrahedron size away from / near the valve, mm.
    progress : callable
        ``progress(fraction, message)`` during the build.
    """
    from cardiotwin import workflows
    from cardiotwin.store import Actor

    store = workflows.open_store(Path(root))
    try:
        existing = {u["username"] for u in workflows.list_users(store)}
        added = []
        for username, password, role in DEFAULT_USERS:
            if username not in existing:
                workflows.add_user(store, username, password, role)
                added.append(username)
        operator = os.environ.get("CARDIOTWIN_USER") or getpass.getuser()
        actor = Actor(username=operator, role="clinician", client=CLIENT)
        patients = workflows.list_patients(store=store, actor=actor, purpose="demo setup")
        with_twin = [p.pseudonym for p in patients if p.latest_version]
        built = None
        t0 = time.perf_counter()
        if not with_twin:
            with tempfile.TemporaryDirectory(prefix="cardiotwin-seed-") as tmp:
                study = workflows.write_phantom(tmp, seed=phantom_seed, spacing_mm=spacing_mm,
                                                write_labels=False)
                twin = workflows.build_twin(
                    study.dicom_dir, store=store, actor=actor, purpose="demo setup",
                    settings=workflows.BuildSettings(h_max_mm=h_max_mm, h_min_mm=h_min_mm),
                    progress=progress)
            built = twin.pseudonym
            with_twin = [built]
        return SeedReport(tuple(added), built, tuple(with_twin), time.perf_counter() - t0)
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m app.seed``."""
    parser = argparse.ArgumentParser(
        prog="python -m app.seed",
        description="Create the app's default users and the demo twin in a store (idempotent).")
    parser.add_argument("--store", type=Path,
                        default=Path(os.environ.get("CARDIOTWIN_HOME", "out/demo/store")),
                        help="store folder (default: $CARDIOTWIN_HOME or out/demo/store)")
    parser.add_argument("--spacing", type=float, default=1.0, help="phantom voxel size, mm")
    parser.add_argument("--seed", type=int, default=0, help="phantom random seed")
    parser.add_argument("--h-max", type=float, default=3.0, help="mesh size away from the valve, mm")
    parser.add_argument("--h-min", type=float, default=1.2, help="mesh size near the valve, mm")
    args = parser.parse_args(argv)

    from cardiotwin.errors import CardiotwinError

    print(f"seeding store {args.store}", flush=True)
    try:
        report = seed_store(args.store, spacing_mm=args.spacing, phantom_seed=args.seed,
                            h_max_mm=args.h_max, h_min_mm=args.h_min)
    except CardiotwinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in report.users_added:
        role = next(r for u, _p, r in DEFAULT_USERS if u == name)
        print(f"added user {name} ({role})")
    if not report.users_added:
        print("default users already present")
    if report.built_pseudonym:
        print(f"built demo twin {report.built_pseudonym} in {report.build_time_s:.0f} s")
    else:
        print(f"store already has twin(s): {', '.join(report.pseudonyms)}")
    print(f"start the app: streamlit run app/Home.py -- --store {args.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
