"""A real mosquitto broker for the MQTT tests, on a free loopback port.

The Debian package is installed by ``scripts/install-test-tools.sh`` (``make test`` runs it). The
fixture writes a minimal configuration into ``tmp_path`` (loopback listener, anonymous clients,
persistence in ``tmp_path`` so a restart keeps sessions and queued QoS-1 messages), starts
``mosquitto -c``, waits until the port accepts, and stops it after the test.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from cardiotwin.monitoring.broker import free_port, wait_for_port

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        pytest.fail("mosquitto (the MQTT broker the live-monitoring tests run against) is not "
                    "installed; run `bash scripts/install-test-tools.sh` (as root: it "
                    "apt-get installs the Debian package)", pytrace=False)
    return found


class Mosquitto:
    """A mosquitto process on ``127.0.0.1:port`` that a test can stop and start again."""

    host = "127.0.0.1"

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.port = free_port(self.host)
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.config.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            # started as root, mosquitto would switch to user mosquitto, who cannot write the
            # persistence file into tmp_path; as another user this line changes nothing
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 10000\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            encoding="utf-8")
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.host, self.port, timeout_s=START_TIMEOUT_S, what="mosquitto")
        except Exception:
            self.stop()
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"mosquitto did not start on {self.address}:\n{log}", pytrace=False)

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file), bounded; SIGKILL if it hangs."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path):
    """A running mosquitto (``.host``, ``.port``, ``.address``; ``.stop()``/``.start()`` restart
    it on the same port with its persisted sessions)."""
    broker = Mosquitto(_mosquitto_binary(), tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
