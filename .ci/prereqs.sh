#!/usr/bin/env bash
# Check what `make` needs before it installs anything; say how to get what is missing.
set -u
PYTHON="${PYTHON:-python3}"
fail=0
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: $PYTHON not found. Install Python 3.11+ (Debian/Ubuntu: apt-get install python3 python3-venv; macOS: brew install python@3.11), or run make PYTHON=/path/to/python3.11" >&2
  fail=1
elif ! "$PYTHON" -c 'import sys' >/dev/null 2>&1; then
  echo "error: $PYTHON is on PATH but does not run. Install Python 3.11+ (apt-get install python3.11 python3.11-venv, brew install python@3.11) and run make PYTHON=python3.11" >&2
  fail=1
elif ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "error: $("$PYTHON" --version 2>&1) is too old: Python 3.11+ is required. Install it (apt-get install python3.11 python3.11-venv, brew install python@3.11) and run make PYTHON=python3.11" >&2
  fail=1
elif ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "error: $PYTHON has no venv/ensurepip module. Install it (Debian/Ubuntu: apt-get install python3-venv)" >&2
  fail=1
fi
JAVA="java"
[ -n "${JAVA_HOME:-}" ] && JAVA="$JAVA_HOME/bin/java"
if ! command -v "$JAVA" >/dev/null 2>&1; then
  echo "error: Java not found. Spark 4 needs Java 17+: apt-get install openjdk-17-jre-headless (or brew install openjdk@17), then set JAVA_HOME" >&2
  fail=1
else
  version=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' | head -n 1)
  if [ -z "$version" ] || [ "$version" -lt 17 ]; then
    echo "error: Java ${version:-unknown} found at $JAVA; Spark 4 needs Java 17+: apt-get install openjdk-17-jre-headless (or brew install openjdk@17), then set JAVA_HOME" >&2
    fail=1
  fi
fi
exit $fail
