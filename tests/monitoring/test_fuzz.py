"""Mangled HL7 v2 messages and FHIR JSON end as a Batch or a CardiotwinError, never a raw
exception from the parsers (seeded, so a failure replays)."""

import copy
import random

from cardiotwin.errors import CardiotwinError
from cardiotwin.monitoring import read_fhir, read_hl7v2
from tests.monitoring.test_fhir import bundle, observation
from tests.monitoring.test_hl7v2 import MSG

ALPHABET = "|^~\\&\r\nMSHPIDOBX0123456789.+-abc"
JUNK = [None, 1, "x", [], {}, [1], 1e308, -5, True, "2024-13-45T99:99:99+99:99"]


def test_mangled_hl7_messages():
    rng = random.Random(21)
    for _ in range(300):
        s = list(MSG)
        for _ in range(rng.randint(1, 8)):
            k, op = rng.randrange(len(s)), rng.random()
            if op < 0.4:
                s[k] = rng.choice(ALPHABET)
            elif op < 0.7:
                del s[k]
            else:
                s.insert(k, rng.choice(ALPHABET))
        try:
            read_hl7v2("".join(s), authority="TWIN")
        except CardiotwinError:
            pass
    # a time zone offset beyond a day is a rejection, not a crash
    batch = read_hl7v2(MSG.replace("20240501104200+0200", "20240501104200+9900"),
                       authority="TWIN")
    assert any(r.field in ("OBX-14", "OBR-7") and "UTC offset" in r.reason
               for r in batch.rejections)


def _mutate(obj, rng):
    if isinstance(obj, dict) and obj:
        if rng.random() < 0.3:
            k = rng.choice(list(obj))
            r = rng.random()
            if r < 0.3:
                del obj[k]
            elif r < 0.6:
                obj[k] = rng.choice(JUNK)
            else:
                _mutate(obj[k], rng)
        else:
            for v in obj.values():
                _mutate(v, rng)
    elif isinstance(obj, list):
        for v in obj:
            _mutate(v, rng)


def test_mangled_fhir_bundles():
    rng = random.Random(21)
    base = bundle(observation("a", "8867-4", 72, "/min"),
                  observation("b", "8480-6", 120, "mm[Hg]"))
    for _ in range(300):
        doc = copy.deepcopy(base)
        _mutate(doc, rng)
        try:
            read_fhir(doc)
        except CardiotwinError:
            pass
