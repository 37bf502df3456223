"""Live-twin benchmark (issue 21 item 9): update latency in process and throughput through mosquitto.

Run with ``python benchmarks/monitoring.py`` (or ``benchmarks/run.py --monitoring``). Writes
``benchmarks/results/<date>-<host>-monitoring.json`` and prints the figures for
``docs/performance.md``.

What is measured
----------------
* **Filter update** in process: ``assimilate(state, [obs])`` (the UKF, one scalar update) on a
  twin's state, for per-beat vitals cycling heart rate, systolic, diastolic and mean pressure;
  ``time.perf_counter`` around each call; median and p99.
* **Full ingest path**, one observation per call: ``workflows.ingest_observations`` on a store in
  a temporary folder (checks, store duplicate/order checks, the filter update, a new twin version,
  the observation row, the audit record, one SQLite transaction with ``synchronous=FULL``, and
  the twin's estimate afterwards).
* **Batched ingest**: ``workflows.ingest_batches`` with one observation for each of ``--batch``
  twins in one transaction (what the service's batch mode does); time per transaction and per
  observation.
* **Throughput through the real broker**: ``--patients`` twins in the store; a publisher process
  sends one FHIR Observation per twin per second (QoS 1, evenly spread, ``--patients`` messages/s)
  for ``--seconds`` s to a mosquitto started here (``max_queued_messages`` and
  ``max_inflight_messages`` raised, see docs/monitoring.md); the subscriber is an
  ``ObservationService`` in batch mode whose handler is ``workflows.ingest_batches`` (each message
  acknowledged after its batch committed). Lost = published and acknowledged by the broker but
  not stored; counted in the store's ``observations`` table at the end.
"""

from __future__ import annotations

import argparse
import getpass
import json
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

HERE = Path(__file__).resolve().parent
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
# (code, unit, value of beat k) cycled per second: heart rate, systolic, diastolic, mean
VITALS = (("8867-4", "/min", lambda k: 70.0 + (k % 7)),
          ("8480-6", "mm[Hg]", lambda k: 125.0 + (k % 5)),
          ("8462-4", "mm[Hg]", lambda k: 78.0 + (k % 3)),
          ("8478-0", "mm[Hg]", lambda k: 95.0 + (k % 4)))


def observation(pseudonym: str, k: int):
    from cardiotwin.monitoring import Observation

    code, unit, value = VITALS[k % len(VITALS)]
    return Observation(subject=pseudonym, time=T0 + timedelta(seconds=k), code=code,
                       value_as_received=value(k), unit=unit, source="bench",
                       device="bedside-1", record=f"s{k}")


def pseudonym(i: int) -> str:
    return f"bench-{i:05d}"


def stats_ms(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1e3 * s for s in seconds)
    return {"n": len(ms), "median_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))],
            "max_ms": ms[-1]}


def new_twin(name: str, *, prior: dict | None = None):
    """A twin with the benchmark's physiology; ``prior``: its filter state already made (the
    prior's fit costs about 60 ms once per twin, paid at the first ingest otherwise)."""
    from cardiotwin.twin.assimilate import ASSIMILATION_KEY
    from cardiotwin.twin.state import PatientTwin, Physiology

    twin = PatientTwin(pseudonym=name, physiology=Physiology(
        heart_rate_bpm=72, stroke_volume_ml=70, systolic_bp_mmhg=126, diastolic_bp_mmhg=79))
    if prior is not None:
        twin.parameters = {**twin.parameters, ASSIMILATION_KEY: prior}
    return twin


def shared_prior() -> dict:
    """The filter prior of a twin saved as version 1 with the benchmark's physiology."""
    from dataclasses import replace

    from cardiotwin.twin.assimilate import initial_state

    return initial_state(replace(new_twin("bench-prior"), version=1)).to_dict()


def bench_filter(n: int) -> dict:
    from cardiotwin.twin.assimilate import assimilate, initial_state

    state = initial_state(new_twin("bench-filter"))
    times: list[float] = []
    by_code: dict[str, list[float]] = {}
    for k in range(n):
        obs = observation("bench-filter", k)
        t = time.perf_counter()
        state = assimilate(state, [obs])
        dt = time.perf_counter() - t
        times.append(dt)
        by_code.setdefault(obs.code, []).append(dt)
    return {"all": stats_ms(times), **{c: stats_ms(v) for c, v in by_code.items()}}


def bench_ingest(root: Path, n: int, batch: int, n_batches: int) -> dict:
    from cardiotwin import workflows
    from cardiotwin.store import Actor

    st = workflows.open_store(root)
    actor = Actor("bench", "clinician")
    st.save_twin(new_twin("bench-one"), actor=actor, purpose="bench", reason="built")
    times = []
    for k in range(n):
        obs = observation("bench-one", k)
        t = time.perf_counter()
        workflows.ingest_observations("bench-one", [obs], store=st, actor=actor, purpose="bench")
        times.append(time.perf_counter() - t)
    names = [pseudonym(i) for i in range(batch)]
    prior = shared_prior()
    for p in names:
        st.save_twin(new_twin(p, prior=prior), actor=actor, purpose="bench", reason="built")
    tx = []
    for k in range(n_batches):
        t = time.perf_counter()
        out = workflows.ingest_batches({p: [observation(p, k)] for p in names}, store=st,
                                       actor=actor, purpose="bench")
        tx.append(time.perf_counter() - t)
        assert all(r.accepted == 1 and not r.error for r in out), out[:3]
    st.close()
    per_obs = [t / batch for t in tx]
    return {"per_observation": stats_ms(times),
            "batched": {"twins_per_transaction": batch, "transaction": stats_ms(tx),
                        "per_observation": stats_ms(per_obs)}}


PUBLISHER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from monitoring import observation, pseudonym
from cardiotwin.monitoring.mqtt import ObservationPublisher
host, port, n, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pub = ObservationPublisher(host, port).connect(timeout_s=10)
start = time.monotonic()
start_wall = time.time()
behind = 0.0
for k in range(seconds):
    for i in range(n):
        due = k + i / n
        now = time.monotonic() - start
        if due > now:
            time.sleep(due - now)
        else:
            behind = max(behind, now - due)
        pub.publish(observation(pseudonym(i), k))
sent_s = time.monotonic() - start
pub.flush(timeout_s=120)
acked_s = time.monotonic() - start
pub.close()
print(json.dumps({"published": pub.published, "publish_seconds": sent_s, "start": start_wall,
                  "all_acknowledged_seconds": acked_s, "max_behind_schedule_s": behind}))
"""


def bench_throughput(root: Path, n_patients: int, seconds: int, window_s: float) -> dict:
    from cardiotwin import workflows
    from cardiotwin.monitoring.broker import free_port, wait_for_port
    from cardiotwin.monitoring.mqtt import ObservationService
    from cardiotwin.store import Actor

    st = workflows.open_store(root / "store")
    actor = Actor("bench", "clinician")
    t = time.perf_counter()
    prior = shared_prior()
    for i in range(n_patients):
        st.save_twin(new_twin(pseudonym(i), prior=prior), actor=actor, purpose="bench",
                     reason="built")
    setup_s = time.perf_counter() - t
    port = free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
                    "persistence false\nmax_queued_messages 0\n"
                    "max_inflight_messages 0\n", encoding="utf-8")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                               str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tx: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []

    commits: list[tuple[float, float]] = []  # (commit time, schedule time of the oldest), s

    def handler(groups):
        t0 = time.perf_counter()
        out = workflows.ingest_batches(groups, store=st, actor=actor, purpose="bench")
        tx.append(time.perf_counter() - t0)
        sizes.append(sum(len(v) for v in groups.values()))
        oldest = min((o.time - T0).total_seconds() + int(p.split("-")[1]) / n_patients
                     for p, obs in groups.items() for o in obs)
        commits.append((time.time(), oldest))
        errors.extend(r.error for r in out if r.error)

    try:
        wait_for_port("127.0.0.1", port, timeout_s=10, what="mosquitto")
        svc = ObservationService("127.0.0.1", port, batch_handler=handler,
                                 batch_window_s=window_s, max_batch=10 * n_patients * seconds,
                                 client_id="bench-service")
        with svc.running(timeout_s=10):
            cpu0 = time.process_time()
            pub = subprocess.run([sys.executable, "-c", PUBLISHER, str(HERE), "127.0.0.1",
                                  str(port), str(n_patients), str(seconds)],
                                 capture_output=True, text=True, timeout=seconds + 180)
            if pub.returncode:
                raise RuntimeError(pub.stderr[-2000:])
            sent = json.loads(pub.stdout.strip().splitlines()[-1])
            t_sent = time.monotonic()
            try:
                svc.wait_for(lambda s: s.acked >= sent["published"], timeout_s=120,
                             what="every message committed and acknowledged")
            except Exception as err:  # noqa: BLE001 - reported as lost below
                print(f"not drained: {err}")
            drain_s = time.monotonic() - t_sent
            cpu_s = time.process_time() - cpu0
        stats = svc.stats
    finally:
        broker.terminate()
        broker.wait(10)
        st.close()
    with sqlite3.connect(root / "store" / "cardiotwin.sqlite") as db:
        stored = db.execute("SELECT count(*) FROM observations").fetchone()[0]
        versions = db.execute("SELECT count(*) FROM twin_versions").fetchone()[0]
    return {"patients": n_patients, "seconds": seconds, "rate_per_s": n_patients,
            "setup_twins_s": setup_s, "publisher": sent,
            "service": {"messages": stats.messages, "accepted": stats.accepted,
                        "duplicates": stats.duplicates, "quarantined": stats.quarantined,
                        "handler_errors": stats.handler_errors, "batches": stats.batches,
                        "acked": stats.acked, "cpu_s": cpu_s},
            "drain_after_publisher_s": drain_s, "batch_window_s": window_s,
            "transactions": stats_ms(tx) if tx else {},
            "batch_size": {"median": statistics.median(sizes) if sizes else 0,
                           "max": max(sizes, default=0)},
            "commit_lag_s": stats_ms([c - (sent["start"] + due) for c, due in commits])
            if commits else {},
            "stored_observations": stored, "twin_versions": versions,
            "store_errors": errors[:5], "lost": sent["published"] - stored}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=1000, help="filter updates timed")
    ap.add_argument("--ingests", type=int, default=200, help="single-observation ingests timed")
    ap.add_argument("--batch", type=int, default=200, help="twins per batched transaction")
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--window", type=float, default=10.0, help="batch window of the service, s")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    started = datetime.now(UTC)
    result: dict = {"benchmark": "monitoring", "started_utc": started.isoformat(),
                    "machine": machine_info()}
    result["filter_update"] = bench_filter(args.updates)
    print("filter update:", json.dumps(result["filter_update"]["all"]))
    with tempfile.TemporaryDirectory() as tmp:
        result["ingest"] = bench_ingest(Path(tmp) / "store", args.ingests, args.batch, 5)
    print("ingest:", json.dumps(result["ingest"]))
    with tempfile.TemporaryDirectory() as tmp:
        result["throughput"] = bench_throughput(Path(tmp), args.patients, args.seconds,
                                                args.window)
    print("throughput:", json.dumps(result["throughput"], indent=1))
    result["machine_after"] = {"load_average_1_5_15": machine_info()["load_average_1_5_15"]}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{started:%Y%m%d-%H%M%S}-{platform.node()}-monitoring.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path}")
    return result


if __name__ == "__main__":
    main()
