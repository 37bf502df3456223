"""Live data over MQTT: ``cardiotwin twin serve`` (subscribe, update the twins) and
``cardiotwin monitor replay`` (a recorded patient as a live feed)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from cardiotwin.cli._common import RoleOpt, StoreOpt, actor_for, console, errors, store_at
from cardiotwin.cli.twin import twin_app

monitor_app = typer.Typer(
    help="Live monitoring streams over MQTT: replay a recorded patient as a live feed.",
    no_args_is_help=True)

BROKER_ENV = "CARDIOTWIN_MQTT_BROKER"


def _serve_handler(store: Path | None, role: str):
    """The handler ``twin serve`` gives every accepted batch: ``handler(pseudonym, observations)``.

    Each batch is printed, then applied to the stored twin of that pseudonym
    (:func:`cardiotwin.workflows.ingest_observations`: stored, assimilated, a new twin version,
    audited). A store error is tried again twice (0.2 s, 0.5 s later; the ingest is idempotent);
    a batch for a pseudonym without a twin, or one the store still refuses, is reported and the
    service keeps running.
    """
    from cardiotwin import workflows
    from cardiotwin.errors import CardiotwinError, StoreError

    st, actor = store_at(store), actor_for(role)

    def handler(pseudonym, observations) -> None:
        workflows.log_observations(pseudonym, observations)
        shown = ", ".join(f"{o.vital.name} {o.value_as_received:g} {o.unit}"
                          for o in observations[:3])
        console.print(f"{observations[0].time.isoformat()}  {pseudonym}: {shown}"
                      + (f" (+{len(observations) - 3})" if len(observations) > 3 else ""),
                      highlight=False)
        # A store error may be passing (a locked database): the ingest is idempotent, so it is
        # tried again twice before the batch is reported as not applied (and acknowledged).
        for wait_s in (0.2, 0.5, None):
            try:
                res = workflows.ingest_observations(pseudonym, observations, store=st,
                                                    actor=actor)
                break
            except StoreError as exc:
                if wait_s is None:
                    console.print(f"  not applied to {pseudonym}: {exc}", highlight=False)
                    return
                time.sleep(wait_s)
            except CardiotwinError as exc:
                console.print(f"  not applied to {pseudonym}: {exc}", highlight=False)
                return
        flags = [f for f, on in (("STALE", res.stale), ("DRIFT", res.drift)) if on]
        what = (f"version {res.version}" if res.version is not None
                else f"no new version (still {res.base_version})")
        console.print(f"  twin {pseudonym}: {what}; {res.accepted} accepted, {res.duplicates} "
                      f"duplicate, {len(res.quarantined)} quarantined"
                      + (f"; {' '.join(flags)}" if flags else ""), highlight=False)

    return handler


def _serve_batch_handler(store: Path | None, role: str):
    """The batch handler of ``twin serve --batch-window``: every batch window's observations of
    all twins applied in one store transaction (:func:`cardiotwin.workflows.ingest_batches`),
    one line per batch and one per twin the store refused."""
    from cardiotwin import workflows

    st, actor = store_at(store), actor_for(role)

    def handler(groups) -> None:
        out = workflows.ingest_batches(groups, store=st, actor=actor)
        for r in out:
            if r.error:
                console.print(f"  not applied to {r.pseudonym}: {r.error}", highlight=False)
        n_obs = sum(len(v) for v in groups.values())
        versions = sum(r.version is not None for r in out)
        console.print(f"batch: {n_obs} observations of {len(groups)} twins -> {versions} new "
                      f"versions, {sum(r.duplicates for r in out)} duplicate", highlight=False)

    return handler


@twin_app.command("serve")
def twin_serve(
    broker: Annotated[str | None, typer.Option(
        "--broker", help="MQTT broker HOST:PORT to subscribe to (your mosquitto). Default: "
        f"${BROKER_ENV}, else an embedded broker (--embedded).")] = None,
    embedded: Annotated[bool, typer.Option(
        "--embedded", help="Start an embedded broker (amqtt) on --broker's address, default "
        "127.0.0.1:1883, and serve from it: for demos; it keeps nothing after it stops.")] = False,
    store: StoreOpt = None,
    topic: Annotated[str, typer.Option(
        help="Topic filter; each topic must be cardiotwin/<pseudonym>/observations.")
    ] = "cardiotwin/+/observations",
    client_id: Annotated[str, typer.Option(
        help="Fixed MQTT client id: the broker keeps the subscription and queues QoS-1 "
        "messages under it while the service is away.")] = "cardiotwin-twin-serve",
    max_seconds: Annotated[float | None, typer.Option(
        "--max-seconds", help="Stop after this many seconds (default: until Ctrl-C).")] = None,
    quarantine: Annotated[Path | None, typer.Option(
        "--quarantine", help="Write the refused messages (one JSON a line, with the reason) "
        "to this file when the service stops.")] = None,
    connect_timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the broker at start.")] = 10.0,
    batch_window: Annotated[float | None, typer.Option(
        "--batch-window", help="Seconds: apply the messages of all twins that arrive within "
        "this window in one store transaction (one disk sync), acknowledging them after it "
        "committed; for many twins at once. Default: one transaction per message.")] = None,
    role: RoleOpt = "clinician",
) -> None:
    """Subscribe to live observations over MQTT and hand every accepted batch to the twin.

    Each message is one FHIR R4 Observation (or Bundle) in JSON on the topic
    cardiotwin/<pseudonym>/observations, at QoS 1. Messages are checked like files are (LOINC
    code, UCUM unit, plausible range, time order, duplicates); refused ones are quarantined
    with the reason and the service goes on. It reconnects by itself after a broker restart,
    and the broker keeps what was published meanwhile (persistent session).

    \b
    Examples:
      cardiotwin twin serve --embedded --max-seconds 60
      cardiotwin twin serve --broker 127.0.0.1:1883
      cardiotwin monitor replay data/100 --broker 127.0.0.1:1883 --subject tw-1 --speed 10
    """
    from cardiotwin import workflows
    from cardiotwin.errors import InputError

    def ready(service, local) -> None:
        if local is not None:
            console.print(f"embedded MQTT broker (amqtt) on {local.address}; publish with "
                          f"'cardiotwin monitor replay RECORD --broker {local.address} "
                          "--subject PSEUDONYM'", highlight=False)
        console.print(f"subscribed to {service.topic} on {service.broker} (QoS 1, client id "
                      f"{service.client_id}); Ctrl-C stops", highlight=False)

    with errors():
        if batch_window is not None and not batch_window > 0:
            raise InputError(f"--batch-window {batch_window!r}: expected seconds > 0, e.g. 1")
        handlers = ({"handler": _serve_handler(store, role)} if batch_window is None else
                    {"batch_handler": _serve_batch_handler(store, role),
                     "batch_window_s": batch_window})
        service = workflows.serve_observations(
            broker or os.environ.get(BROKER_ENV), embedded=embedded, topic=topic,
            client_id=client_id, max_seconds=max_seconds, connect_timeout_s=connect_timeout,
            on_ready=ready, **handlers)
        stats = service.stats
        console.print(f"{stats.messages} messages: {stats.accepted} observations accepted, "
                      f"{stats.duplicates} duplicates, {stats.quarantined} quarantined, "
                      f"{max(stats.connects - 1, 0)} reconnections", highlight=False)
        if len(service.quarantine):
            console.print(f"quarantined by kind: {service.quarantine.kinds()}")
        if quarantine is not None:
            service.quarantine.write_jsonl(quarantine)
            console.print(f"quarantine written to {quarantine}")


@monitor_app.command("replay")
def monitor_replay(
    record: Annotated[Path, typer.Argument(
        help="A WFDB record with ECG and/or arterial pressure: its path without .hea "
        "(e.g. data/physionet/100).")],
    subject: Annotated[str, typer.Option(
        "--subject", help="The twin's pseudonym the stream is for (cardiotwin twin list); "
        "the topic is cardiotwin/<pseudonym>/observations.")],
    broker: Annotated[str, typer.Option(
        "--broker", help=f"MQTT broker HOST:PORT. Default: ${BROKER_ENV}, else "
        "127.0.0.1:1883.")] = "",
    speed: Annotated[float, typer.Option(
        help="Replay speed: 1 = real time, 10 = ten times faster.")] = 1.0,
    max_beats: Annotated[int | None, typer.Option(
        "--max-beats", help="Send only the first N beat times.")] = None,
    start: Annotated[str | None, typer.Option(
        help="Time of the record's first sample, ISO 8601 with a UTC offset "
        "(default: now).")] = None,
) -> None:
    """Replay a recorded patient (WFDB) as a live MQTT stream of per-beat vitals.

    Heart rate per R-R interval (ECG) and systolic, diastolic, mean pressure and pulse rate
    per beat (arterial pressure) are sent as FHIR R4 Observations at QoS 1, each when its beat
    is due at the chosen speed; the command returns when the broker acknowledged all of them.

    \b
    Example:
      cardiotwin monitor replay ../shared/data/physionet/100 --subject tw-1 \\
          --broker 127.0.0.1:1883 --speed 10 --max-beats 200
    """
    from datetime import datetime

    from cardiotwin import workflows
    from cardiotwin.errors import InputError

    with errors():
        address = broker or os.environ.get(BROKER_ENV) or "127.0.0.1:1883"
        start_time = None
        if start is not None:
            try:
                start_time = datetime.fromisoformat(start)
            except ValueError:
                raise InputError(f"--start {start!r}: expected ISO 8601 with a UTC offset, "
                                 "e.g. 2024-05-01T10:42:00+02:00") from None
            if start_time.tzinfo is None:
                raise InputError(f"--start {start!r} has no UTC offset; add one, e.g. "
                                 f"{start}+00:00")
        res = workflows.replay_record(record, broker=address, subject=subject, speed=speed,
                                      max_beats=max_beats, start_time=start_time)
        console.print(f"replayed {res.record} to {address} for {res.subject}: "
                      f"{res.observations} observations over {res.beats} beat times, "
                      f"{res.record_seconds:.1f} s of record in {res.wall_seconds:.1f} s "
                      f"(speed {res.speed:g}), all acknowledged", highlight=False)
        if res.reader_rejections:
            console.print(f"{res.reader_rejections} beats refused by the reader (see the log)")
