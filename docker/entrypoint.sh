#!/bin/sh
# Container entrypoint: `validate|transform|run|maintain|generate|catalog [flags...]` -> `python -m jobs.<job> [flags...]`;
# `executor`: a Spark executor, as Spark on Kubernetes starts one in a pod of this image.
set -eu
job="${1:---help}"
case "$job" in
  validate|transform|run|maintain|generate|catalog)
    shift
    exec python -m "jobs.$job" "$@"
    ;;
  executor)
    # Spark's Kubernetes scheduler starts executor pods with the argument `executor` and their
    # settings in SPARK_* variables (the driver's address, this executor's id, cores, memory,
    # pod name and IP); its JVM options arrive as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
    spark_home="${SPARK_HOME:-$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
    # The executor puts the jars and files the driver ships in its working directory: the root
    # filesystem is read-only, /tmp is the pod's scratch.
    work="${TMPDIR:-/tmp}/spark-executor"
    mkdir -p "$work"
    cd "$work"
    set --
    i=0
    while eval "[ -n \"\${SPARK_JAVA_OPT_$i+set}\" ]"; do
      eval "set -- \"\$@\" \"\${SPARK_JAVA_OPT_$i}\""
      i=$((i + 1))
    done
    exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" "$@" \
      -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" \
      -cp "$spark_home/jars/*:${ECOM_JARS_DIR:-/opt/ecom/jars}/*" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" \
      --executor-id "$SPARK_EXECUTOR_ID" \
      --cores "$SPARK_EXECUTOR_CORES" \
      --app-id "$SPARK_APPLICATION_ID" \
      --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "$SPARK_EXECUTOR_POD_NAME"
    ;;
  -h|--help)
    echo "usage: IMAGE validate|transform|run|maintain|generate|catalog [flags]   (IMAGE <job> --help lists a job's flags)"
    echo "       IMAGE executor   (a Spark executor pod: started by Spark on Kubernetes, configured by SPARK_* variables)"
    exit 0
    ;;
  *)
    echo "error: unknown job '$job': expected validate, transform, run, maintain, generate or catalog" >&2
    exit 2
    ;;
esac
