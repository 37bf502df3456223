#!/usr/bin/env bash
# Give the venv an MPI-enabled `adios2` Python module and adios4dolfinx (checkpoints that restart
# on any number of MPI ranks).
#
# Why: the PyPI `adios2` wheel is built without MPI, which adios4dolfinx refuses, and its bundled
# libadios2 clashes with the one dolfinx-solver-real ships (importing it first breaks
# `import dolfinx`). dolfinx-solver-real already ships ADIOS2 2.12's MPI libraries
# (dolfinx_solver/lib/libadios2_*_mpi.so.2.12) but no Python bindings. This script compiles only
# ADIOS2's Python bindings (11 nanobind sources, about 2 minutes) from the ADIOS2 2.12.1 source
# on PyPI and links them against those bundled libraries; ADIOS2's core is not built.
#
# Needs: a C++ compiler, cmake >= 3.15 and ninja (Debian: build-essential cmake ninja-build; cmake
# and ninja are taken from PyPI when missing). Idempotent: a second run only re-checks.
# Usage: bash scripts/build-adios2.sh [VENV]      (VENV defaults to .venv; ADIOS2_SDIST=path of
#        adios2-2.12.1.1001.tar.gz skips the download)
set -euo pipefail

VENV=$(realpath "${1:-.venv}")
PY="$VENV/bin/python"
ADIOS2_VERSION=2.12.1.1001
ADIOS2_SDIST_URL="https://files.pythonhosted.org/packages/58/d9/254e366559bf9a3f7cb21fb4e516852d5b89466ea5f7864005765404ed33/adios2-$ADIOS2_VERSION.tar.gz"
ADIOS2_SDIST_SHA256=f3bf3a6e64b800351a091d4fc70cc8437041c36c81f90f01697b81f168b6adb0
A4D_VERSION=0.11.0
CACHE="$VENV/.adios2-build"
say() { echo "build-adios2: $*"; }

if [ ! -x "$PY" ]; then
    say "no Python at $PY; create the venv first (make venv)" >&2
    exit 1
fi
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
EXT=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
LIBDIR=$("$PY" -c "import importlib.util as u, os; \
print(os.path.join(os.path.dirname(u.find_spec('dolfinx_solver').origin), 'lib'))")

check() {
    PYTHONNOUSERSITE=1 "$PY" - <<'EOF'
import adios2, dolfinx_solver, dolfinx  # noqa: F401  (adios2 first: it must not break dolfinx)
import adios4dolfinx  # noqa: F401
from mpi4py import MPI
assert adios2.is_built_with_mpi, "adios2 without MPI"
adios2.Adios(MPI.COMM_WORLD)
print(f"adios2 {adios2.__version__} (MPI) and adios4dolfinx {adios4dolfinx.__version__} work")
EOF
}

if [ -f "$SITE/adios2/bindings/adios2_bindings$EXT" ] && [ -d "$SITE/adios4dolfinx" ] \
        && check 2>/dev/null | sed 's/^/build-adios2: /'; then
    exit 0
fi
for lib in cxx cxx_mpi core core_mpi; do
    if [ ! -e "$LIBDIR/libadios2_$lib.so.2.12" ]; then
        say "dolfinx-solver-real ships no $LIBDIR/libadios2_$lib.so.2.12 (a different version?);" \
            "the checkpoints fall back to per-rank .npz files" >&2
        exit 1
    fi
done
if "$PY" -m pip show adios2 >/dev/null 2>&1; then
    say "removing the PyPI adios2 wheel (no MPI; it breaks 'import dolfinx')"
    "$PY" -m pip uninstall --quiet --yes adios2
fi
for tool in cmake ninja; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "$VENV/bin/$tool" ]; then
        say "no $tool on PATH: installing the PyPI wheel into the venv"
        "$PY" -m pip install --quiet "$tool"
    fi
done
export PATH="$PATH:$VENV/bin"
mkdir -p "$CACHE"

# 1. the ADIOS2 source (the PyPI sdist, checked against its SHA-256)
SRC="$CACHE/adios2-$ADIOS2_VERSION"
if [ ! -f "$SRC/CMakeLists.txt" ] && [ -n "${ADIOS2_SDIST:-}" ]; then
    tar -xzf "$ADIOS2_SDIST" -C "$CACHE"      # a copy of the sdist, for machines without PyPI
fi
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    say "fetching the ADIOS2 $ADIOS2_VERSION source from PyPI"
    "$PY" - "$ADIOS2_SDIST_URL" "$CACHE/adios2.tar.gz" "$ADIOS2_SDIST_SHA256" <<'EOF'
import hashlib, os, ssl, sys, urllib.request
url, dest, sha = sys.argv[1:]
cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")  # as pip is configured
ctx = ssl.create_default_context(cafile=cafile if cafile and os.path.isfile(cafile) else None)
data = urllib.request.urlopen(url, timeout=180, context=ctx).read()
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit(f"build-adios2: {url} does not have the expected SHA-256 {sha}")
open(dest, "wb").write(data)
EOF
    tar -xzf "$CACHE/adios2.tar.gz" -C "$CACHE"
    rm -f "$CACHE/adios2.tar.gz"
fi

# 2. configure, only for the generated headers and the bindings' compile rules. MPI on; the
#    features that change the layout of classes the bindings include (derived variables, Kokkos,
#    DataMan) are off, as in the bundled build (its exported symbols have none of them).
BUILD="$CACHE/build"
off=""
for feature in SST HDF5 HDF5_VOL BigWhoop Blosc2 BZip2 Caliper ZFP SZ SZ3 LIBPRESSIO MGARD PRODM \
        PNG DAOS DataMan DataSpaces MHS ZeroMQ IME UCX Sodium Catalyst Campaign OpenSSL XRootD \
        CURL Derived_Variable KVCACHE Kokkos CUDA Fortran; do
    off="$off -DADIOS2_USE_$feature=OFF"
done
say "configuring (log: $BUILD.configure.log)"
# shellcheck disable=SC2086
if ! cmake -S "$SRC" -B "$BUILD" -G Ninja -Wno-dev -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_COMPILER="$VENV/bin/mpicc" -DCMAKE_CXX_COMPILER="$VENV/bin/mpicxx" \
        -DMPI_C_COMPILER="$VENV/bin/mpicc" -DMPI_CXX_COMPILER="$VENV/bin/mpicxx" \
        -DPython_EXECUTABLE="$PY" -DPython_FIND_VIRTUALENV=ONLY \
        -DADIOS2_USE_MPI=ON -DADIOS2_USE_Python=ON -DADIOS2_USE_Profiling=ON \
        -DBUILD_TESTING=OFF -DADIOS2_BUILD_EXAMPLES=OFF $off >"$BUILD.configure.log" 2>&1; then
    tail -30 "$BUILD.configure.log" >&2
    say "configure failed (full log above: $BUILD.configure.log)" >&2
    exit 1
fi

# 3. compile the binding objects and ADIOS2's own static nanobind, nothing else
objs=$(ninja -C "$BUILD" -t targets all \
       | sed -n 's#^\(bindings/Python/CMakeFiles/adios2_py\.dir/[^:]*\.o\):.*#\1#p')
say "compiling the Python bindings (log: $BUILD.compile.log)"
# shellcheck disable=SC2086
if ! ninja -C "$BUILD" -j "$(nproc)" lib/libnanobind-static.a $objs >"$BUILD.compile.log" 2>&1; then
    tail -30 "$BUILD.compile.log" >&2
    say "compilation failed (log: $BUILD.compile.log)" >&2
    exit 1
fi

# 4. link against the bundled libraries. libmpi is linked explicitly (--no-as-needed) so that
#    the module finds it through its own RUNPATH even when imported before mpi4py.
rm -rf "$SITE/adios2"
mkdir -p "$SITE/adios2/bindings"
cp "$SRC"/python/adios2/*.py "$SITE/adios2/"
cp "$BUILD"/lib/python3*/site-packages/adios2/bindings/__init__.py "$SITE/adios2/bindings/"
# shellcheck disable=SC2086
(cd "$BUILD" && "$VENV/bin/mpicxx" -fPIC -O2 -shared -Wl,-s -Wl,--gc-sections \
    -o "$SITE/adios2/bindings/adios2_bindings$EXT" $objs lib/libnanobind-static.a \
    -Wl,-rpath,"$LIBDIR" -Wl,-rpath,"$VENV/lib" -L"$LIBDIR" -L"$VENV/lib" \
    -l:libadios2_cxx_mpi.so.2.12 -l:libadios2_cxx.so.2.12 \
    -l:libadios2_core_mpi.so.2.12 -l:libadios2_core.so.2.12 -Wl,--no-as-needed -lmpi)

# 5. adios4dolfinx (it declares fenics-dolfinx, which pip would try to build: no deps)
"$PY" -m pip install --quiet --no-deps "adios4dolfinx==$A4D_VERSION"
check | sed 's/^/build-adios2: /'
