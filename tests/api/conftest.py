"""A real ``cardiotwin api serve`` process on a free loopback port, over a temporary store that
holds a twin saved without anatomy (build physiology only) and one user per role."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PSEUDO = "tw-api"
PASSWORD = "correct-horse-7"
USERS = {"clinician": "dr_api", "researcher": "res_api", "device_engineer": "dev_api",
         "privacy_officer": "po_api", "admin": "admin_api"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_store(home: Path, pseudonyms=(PSEUDO,)) -> None:
    """A store at ``home`` with a cheap twin per pseudonym and a user per role."""
    from cardiotwin.store import Actor
    from cardiotwin.twin.state import PatientTwin, Physiology
    from cardiotwin.workflows import add_user, open_store

    st = open_store(home)
    for p in pseudonyms:
        st.save_twin(PatientTwin(pseudonym=p, physiology=Physiology(
            heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130,
            diastolic_bp_mmhg=75)), actor=Actor("builder", "clinician"), purpose="test",
            reason="built from DICOM")
    for role, name in USERS.items():
        add_user(st, name, PASSWORD, role)
    st.close()


class Server:
    """A running server: its base URL, store folder and log file."""

    def __init__(self, home: Path, log: Path, *, max_body: int | None = None) -> None:
        self.home, self.log_path = home, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CARDIOTWIN_HOME": str(home), "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "cardiotwin.cli", "api", "serve", "--port",
               str(self.port), "--log-level", "warning"]
        if max_body is not None:
            cmd += ["--max-body", str(max_body)]
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"api serve did not answer in 60 s:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fresh store and a server on it, for one test module."""
    base = tmp_path_factory.mktemp("api")
    home = base / "home"
    make_store(home)
    srv = Server(home, base / "server.log", max_body=64 * 1024)
    yield srv
    srv.stop()


def auth(role: str) -> tuple[str, str]:
    """HTTP Basic credentials of the test user holding ``role``."""
    return USERS[role], PASSWORD
