#!/bin/sh
# Container entrypoint: `validate|transform|run|maintain|generate|catalog [flags...]` -> `python -m jobs.<job> [flags...]`.
set -eu
job="${1:---help}"
case "$job" in
  validate|transform|run|maintain|generate|catalog)
    shift
    exec python -m "jobs.$job" "$@"
    ;;
  -h|--help)
    echo "usage: IMAGE validate|transform|run|maintain|generate|catalog [flags]   (IMAGE <job> --help lists a job's flags)"
    exit 0
    ;;
  *)
    echo "error: unknown job '$job': expected validate, transform, run, maintain, generate or catalog" >&2
    exit 2
    ;;
esac
