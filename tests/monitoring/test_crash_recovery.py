"""`kill -9` of `cardiotwin twin serve` mid-stream, against a real mosquitto (issue 21 item 8).

A publisher streams heart-rate observations for one twin while the service is killed twice with
SIGKILL and restarted under the same client id:

1. once right after the store committed a message's transaction and before paho sent its PUBACK
   (the handler kills its own process after the commit), so the broker must redeliver a message
   whose observations are already stored;
2. once at whatever point the stream has reached after 15 further versions.

After the third run has drained the broker's queue, the store must hold every published
observation exactly once, one twin version per message (none for a redelivery), the filter state
must replay from the stored observations bit for bit, and the audit chain must verify.

The same runs again with ``--batch-window`` (batch mode: several messages per transaction,
acknowledged after the commit), where a version holds a batch instead of one message.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from cardiotwin import workflows
from cardiotwin.monitoring import Observation
from cardiotwin.monitoring.mqtt import ObservationPublisher
from cardiotwin.store import Actor
from cardiotwin.twin.state import PatientTwin, Physiology

PSEUDONYM = "tw-k9"
CLIENT_ID = "t-kill9"
N_MESSAGES = 80
CRASH_AFTER_COMMITS = 10
KILL_AFTER_VERSIONS = 15
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
WAIT_S = 60.0

# Runs the real CLI, but SIGKILLs its own process right after the N-th committed ingest: the
# transaction is durable, the PUBACK never leaves.
CRASHING_SERVE = """
import os, signal, sys
from cardiotwin import workflows
from cardiotwin.cli import app

name = os.environ["CRASH_IN"]
real = getattr(workflows, name)
commits = 0

def crash_after_commit(*args, **kwargs):
    global commits
    res = real(*args, **kwargs)
    commits += 1
    if commits >= int(os.environ["CRASH_AFTER_COMMITS"]):
        version = res.version if name == "ingest_observations" else res[0].version
        print(f"SIGKILL after commit of version {version}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return res

setattr(workflows, name, crash_after_commit)
app(sys.argv[1:])
"""
BATCH_WINDOW_S = 0.15


def hr(i: int) -> Observation:
    return Observation(subject=PSEUDONYM, time=T0 + timedelta(seconds=i), code="8867-4",
                       value_as_received=60.0 + 0.25 * i, unit="/min", source="bedside",
                       device="monitor-k9", record=f"beat {i}")


class Serve:
    """One `twin serve` process whose output lines are collected by a reader thread."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def versions(self) -> list[int]:
        return [int(m.group(1)) for x in list(self.lines)
                if (m := re.search(rf"twin {PSEUDONYM}: version (\d+)", x))]

    def batches(self) -> int:
        return sum(x.startswith("batch:") for x in list(self.lines))

    def duplicates(self) -> int:
        return sum(int(m.group(1)) for x in list(self.lines)
                   if x.startswith("batch:") and (m := re.search(r"(\d+) duplicate", x)))

    def wait_until(self, condition, *, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert self.proc.poll() is None or condition(), (
                f"twin serve exited ({self.proc.returncode}) before {what}:\n{self.output}")
            assert time.monotonic() < deadline, f"{what} not reached:\n{self.output}"
            time.sleep(0.05)

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(15)
        self._reader.join(5)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def stored_count(home) -> int:
    with sqlite3.connect(home / "cardiotwin.sqlite") as db:
        return db.execute("SELECT count(*) FROM observations").fetchone()[0]


@pytest.mark.parametrize("mode", ["message", "batch"])
def test_kill_9_mid_stream_loses_nothing_and_applies_nothing_twice(mosquitto, tmp_path, mode):
    batch = mode == "batch"
    home = tmp_path / "home"
    st = workflows.open_store(home)
    actor = Actor("dr_k9", "clinician")
    st.save_twin(PatientTwin(pseudonym=PSEUDONYM, physiology=Physiology(
        heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75)),
        actor=actor, purpose="test", reason="built from DICOM")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), CARDIOTWIN_HOME=str(home),
               CARDIOTWIN_USER="dr_k9", COLUMNS="200",
               CRASH_AFTER_COMMITS=str(2 if batch else CRASH_AFTER_COMMITS),
               CRASH_IN="ingest_batches" if batch else "ingest_observations")
    serve_args = ["twin", "serve", "--broker", mosquitto.address, "--client-id", CLIENT_ID,
                  "--max-seconds", "90"]
    if batch:
        serve_args += ["--batch-window", str(BATCH_WINDOW_S)]
    published = [hr(i) for i in range(N_MESSAGES)]

    # run 1: subscribes (the broker keeps the session from now on), dies after a commit
    run1 = Serve([sys.executable, "-c", CRASHING_SERVE, *serve_args], env)
    run1.wait_until(lambda: "subscribed to" in run1.output, what="subscribed")

    # the stream: 100 messages/s, going on across the kills (the broker queues meanwhile)
    pub = ObservationPublisher(mosquitto.host, mosquitto.port).connect(timeout_s=10)

    def stream() -> None:
        for obs in published:
            pub.publish(obs)
            time.sleep(0.01)

    streaming = threading.Thread(target=stream, daemon=True)
    streaming.start()
    try:
        run1.proc.wait(WAIT_S)
        run1.finish()
        assert run1.proc.returncode == -signal.SIGKILL, run1.output
        if batch:
            assert "SIGKILL after commit of version 3" in run1.output, run1.output
        else:
            assert f"SIGKILL after commit of version {CRASH_AFTER_COMMITS + 1}" in run1.output
            assert run1.versions() == list(range(2, CRASH_AFTER_COMMITS + 1)), run1.output

        # run 2: same client id; the unacknowledged messages come again and are duplicates
        cli = [sys.executable, "-m", "cardiotwin.cli", *serve_args]
        run2 = Serve(cli, env)
        if batch:
            run2.wait_until(lambda: run2.batches() >= 1, what="a batch")
        else:
            run2.wait_until(lambda: len(run2.versions()) >= KILL_AFTER_VERSIONS,
                            what=f"{KILL_AFTER_VERSIONS} versions")
        run2.proc.kill()  # kill -9 wherever it is
        run2.finish()
        assert run2.proc.returncode == -signal.SIGKILL
        if batch:
            assert run2.duplicates() >= 1, run2.output
        else:
            redelivered = re.search(rf"twin {PSEUDONYM}: no new version \(still "
                                    rf"{CRASH_AFTER_COMMITS + 1}\); 0 accepted, 1 duplicate",
                                    run2.output)
            assert redelivered, run2.output
            assert run2.versions()[0] == CRASH_AFTER_COMMITS + 2, run2.output

        # run 3: drains the queue
        streaming.join(WAIT_S)
        pub.flush(timeout_s=WAIT_S)
        run3 = Serve(cli, env)
        run3.wait_until(lambda: stored_count(home) >= N_MESSAGES,
                        what=f"{N_MESSAGES} observations stored")
        time.sleep(1.0)  # a stray redelivery would show up now
        run3.finish()
        runs = (run1, run2, run3)
        print(mode, "versions per run:", [len(r.versions()) or r.batches() for r in runs],
              "redelivered duplicates per run:",
              [r.duplicates() if batch else r.output.count("0 accepted, 1 duplicate")
               for r in runs])
    finally:
        pub.close()

    stored = st.list_observations(PSEUDONYM, actor=actor, purpose="test")
    versions = st.twin_versions(PSEUDONYM, actor=actor, purpose="test")
    # no accepted observation lost, none stored twice
    assert sorted(r["key_sha256"] for r in stored) == sorted(
        o["key_sha256"] for o in (workflows_row(x) for x in published))
    if batch:
        # one version per committed batch, none empty (none for a redelivery)
        last = versions[-1]["version"]
        assert [v["version"] for v in versions] == list(range(1, last + 1))
        assert {r["twin_version"] for r in stored} == set(range(2, last + 1))
    else:
        # one version per message (the build is version 1), none for a redelivery
        assert [v["version"] for v in versions] == list(range(1, N_MESSAGES + 2))
        assert sorted(r["twin_version"] for r in stored) == list(range(2, N_MESSAGES + 2))
    # each observation went into the filter once: the stored state replays bit for bit
    replayed, state = workflows.replay_twin(PSEUDONYM, store=st, actor=actor, purpose="test")
    assert state is not None and replayed.to_dict() == state.to_dict()
    assert state.n_observations == N_MESSAGES
    assert st.verify_audit().ok
    st.close()


def workflows_row(obs: Observation) -> dict:
    from cardiotwin.twin.history import observation_row

    return observation_row(obs)
