#!/usr/bin/env bash
# Run a crm-spark job with spark-submit: ./spark-submit.sh JOB [--master URL] [job args...]
#
# Zips crm_spark/ for --py-files, adds the Delta package, and runs jobs/JOB.py.
# --master defaults to $SPARK_MASTER or local[2]. Extra spark-submit options can be
# given in $CRM_SPARK_SUBMIT_ARGS (e.g. "--driver-memory 8g --executor-memory 8g");
# not in $SPARK_SUBMIT_OPTS, which Spark hands to the Java virtual machine itself.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  echo "usage: $0 JOB [--master URL] [job args...]"
  echo "jobs: $(cd "$here/jobs" && ls *.py | sed 's/\.py$//' | tr '\n' ' ')"
  exit 0
fi
job="$1"; shift
[[ "$job" == "select" ]] && job="select_features"   # jobs/select.py would shadow Python's select module
if [[ ! -f "$here/jobs/$job.py" ]]; then
  echo "spark-submit.sh: no job '$job' in $here/jobs" >&2
  exit 2
fi
master="${SPARK_MASTER:-local[2]}"
if [[ "${1:-}" == "--master" ]]; then master="$2"; shift 2; fi

venv="$here/.venv"
if [[ -x "$venv/bin/spark-submit" ]]; then
  submit="$venv/bin/spark-submit"; python="$venv/bin/python"
else
  submit="$(command -v spark-submit)"; python="$(command -v python3)"
fi
# The Delta jar is declared once, as the default of spark.delta_package; $DELTA_PACKAGE overrides it.
delta_package="${DELTA_PACKAGE:-$(cd "$here" && "$python" -c \
  'from crm_spark.config import SparkConfig; print(SparkConfig.delta_package)')}"

build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
(cd "$here" && "$python" -c "import shutil; shutil.make_archive('$build/crm_spark', 'zip', '.', 'crm_spark')")

export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$python}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$python}"
# shellcheck disable=SC2086
exec "$submit" \
  --master "$master" \
  --name "crm-spark-$job" \
  --packages "$delta_package" \
  --py-files "$build/crm_spark.zip" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  ${CRM_SPARK_SUBMIT_ARGS:-} \
  "$here/jobs/$job.py" "$@"
