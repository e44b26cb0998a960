#!/usr/bin/env bash
# Record the driver JVM's class-data-sharing archive (see common/io/spark.py) from a small
# validate + transform run: `.ci/class-archive.sh PYTHON OUT.jsa`.
# The JVM writes the archive as it exits, after the Python process has already returned, so this
# waits for that JVM to be gone before it moves the finished file into place.
set -euo pipefail
py="$1"
out="$2"
work="$(dirname "$out")/.archive-run"
tmp="$(cd "$(dirname "$out")" && pwd)/.$(basename "$out").partial"
rm -rf "$work" "$tmp" "$out"
trap 'rm -rf "$work"' EXIT
"$py" -m jobs.generate --out "$work/in" --items 2000 --parts 2 --batch-id archive >/dev/null
if ! ECOM_SPARK_DRIVER_JAVA_OPTIONS="-XX:ArchiveClassesAtExit=$tmp" ECOM_LOG_FORMAT=text \
    ECOM_SPARK_MASTER='local[2]' "$py" -m jobs.run --manifest "$work/in/manifest.json" \
    --lake-root "$work/lake" >"$work/run.log" 2>&1; then
  tail -20 "$work/run.log" >&2
  exit 1
fi
for _ in $(seq 240); do
  pgrep -f -- "ArchiveClassesAtExit=$tmp" >/dev/null || break
  sleep 0.5
done
if pgrep -f -- "ArchiveClassesAtExit=$tmp" >/dev/null || [ ! -s "$tmp" ]; then
  echo "the JVM did not write its class archive to $tmp" >&2
  exit 1
fi
mv "$tmp" "$out"
echo "recorded $out ($(du -m "$out" | cut -f1) MB)"
