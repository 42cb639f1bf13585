"""The one place that builds the SparkSession."""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from crm_spark.config import Config
from crm_spark.errors import JavaMissing

log = logging.getLogger(__name__)


# The driver JVM's garbage collector, unless Java options given elsewhere name one. In local mode the driver
# runs the tasks too, and on two cores G1's concurrent threads take CPU from them: with the parallel collector
# the daily run at 100,000 customers took 248, 258 and 264 s against 291 and 316 s with G1, the full run 803 s
# against 886 s (benchmarks/daily.py; the README, "Configuration", has the memory it costs).
DRIVER_GC = "-XX:+UseParallelGC"
DRIVER_OPTIONS = "spark.driver.extraJavaOptions"
# Where else the driver JVM takes options from; a second collector there would stop it from starting.
OTHER_JAVA_OPTIONS = ("spark.driver.defaultJavaOptions",)
JAVA_OPTION_VARIABLES = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "SPARK_SUBMIT_OPTS")


def session_settings(config: Config) -> dict[str, str]:
    """Return the Spark settings a crm-spark session needs.

    Args:
        config: the run configuration.

    Returns:
        Setting name to value: Delta extensions, shuffle partitions, UI and time zone,
        the driver's garbage collector, and any ``spark.extra`` entries (which win). Driver
        Java options in ``spark.extra`` are added to the collector's; the collector is left
        out when they, ``spark.driver.defaultJavaOptions`` or the JVM's option variables
        (``JAVA_TOOL_OPTIONS``, ``JDK_JAVA_OPTIONS``, ``SPARK_SUBMIT_OPTS``) name one.
    """
    progress = config.spark.console_progress
    if progress is None:
        progress = sys.stderr.isatty()
    settings = {
        "spark.app.name": config.spark.app_name,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(config.spark.shuffle_partitions),
        "spark.default.parallelism": str(config.spark.shuffle_partitions),
        "spark.ui.enabled": str(config.spark.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": str(progress).lower(),
        "spark.sql.session.timeZone": "UTC",
        # A table's state (its files) is rebuilt from its log after every commit by a Spark job of this many
        # tasks. The logs hold at most thousands of files, and at the shuffle partitions (8) these jobs took
        # a quarter of a daily run's task time; with one task the daily run at 100,000 customers took 291
        # and 295 s against 336 and 364 s.
        "spark.databricks.delta.snapshotPartitions": "1",
        "spark.sql.adaptive.enabled": "true",
        # Checkpoint files of frames no longer referenced are deleted as the run goes.
        "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
    }
    settings.update(config.spark.extra)
    options = config.spark.extra.get(DRIVER_OPTIONS, "")
    given = [options, *(config.spark.extra.get(k, "") for k in OTHER_JAVA_OPTIONS),
             *(os.environ.get(v, "") for v in JAVA_OPTION_VARIABLES)]
    if not any(re.search(r"-XX:\+Use\w+GC\b", text) for text in given):
        settings[DRIVER_OPTIONS] = f"{DRIVER_GC} {options}".strip()
    return settings


def launched_by_spark_submit() -> bool:
    """Return whether a ``spark-submit`` JVM already runs (it then owns master and jars)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


JAVA_ADVICE = ("Spark needs Java 17 or 21: install a JDK (Debian/Ubuntu: apt install openjdk-17-jre-headless; "
               "macOS: brew install openjdk@17) or set JAVA_HOME to one")


def check_java() -> None:
    """Raise :class:`JavaMissing` unless ``JAVA_HOME`` or the ``PATH`` gives a ``java`` to start Spark with.

    Raises:
        JavaMissing: no Java runtime is found.
    """
    home = os.environ.get("JAVA_HOME")
    if home:
        if not (Path(home) / "bin" / "java").is_file():
            raise JavaMissing(f"JAVA_HOME ({home}) holds no bin/java. {JAVA_ADVICE}")
    elif shutil.which("java") is None:
        raise JavaMissing(f"no java on the PATH and JAVA_HOME is not set. {JAVA_ADVICE}")


JAR_SETTINGS = {"spark.jars", "spark.jars.packages"}


def jar_list_file(package: str) -> Path:
    """Return the file that lists the local jars resolved for the Maven ``package`` (under the user's cache folder)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "crm-spark" / f"{re.sub(r'[^A-Za-z0-9._-]', '_', package)}.jars"


def resolved_jars(package: str) -> list[str] | None:
    """Return the jars a session resolved for ``package`` before, or None when unknown or one is gone.

    Spark resolves ``spark.jars.packages`` with Ivy at every start, about 2.5 s here even
    with every jar cached; given the resolved files, a session starts without that step.
    """
    try:
        jars = jar_list_file(package).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return jars if jars and all(Path(urlparse(jar).path).is_file() for jar in jars) else None


def remember_jars(package: str, jars: str) -> None:
    """Write down the local jars Spark resolved for ``package`` (``spark.jars``, comma-separated), for the next session.

    Nothing is noted unless the package's own jar is among them (a session built before,
    without it, is not taken for one that resolved it). A cache folder that cannot be
    written is logged and left alone: the next session resolves again.
    """
    local = [jar for jar in jars.split(",") if jar.startswith("file:")]
    group, artifact, version = (package.split(":") + ["", "", ""])[:3]
    if not any(jar.endswith(f"/{group}_{artifact}-{version}.jar") for jar in local):
        return
    listing = jar_list_file(package)
    try:
        listing.parent.mkdir(parents=True, exist_ok=True)
        partial = listing.with_name(f"{listing.name}.{os.getpid()}")  # sessions may start side by side
        partial.write_text("\n".join(local) + "\n", encoding="utf-8")
        partial.replace(listing)
    except OSError as error:
        log.info("could not note the resolved Delta jars in %s: %s", listing, error)


def build_spark(config: Config) -> SparkSession:
    """Build (or reuse) the SparkSession for a run.

    Under ``spark-submit`` the launcher's master, packages and Python are used;
    otherwise the config's master and Delta package, and Python workers run the
    interpreter of this process (so vectorized UDFs find pandas). So the same code
    runs under ``python``, ``pytest`` and ``spark-submit --master spark://...``.

    Args:
        config: the run configuration.

    Returns:
        A SparkSession with Delta Lake enabled and its checkpoint directory set.

    Raises:
        JavaMissing: a new JVM is needed and no Java runtime is found.
    """
    builder = SparkSession.builder
    if not launched_by_spark_submit() and SparkSession.getActiveSession() is None:
        check_java()
    package = config.spark.delta_package
    # Jars named in the config would replace these settings: then the package is resolved as given.
    own_jars = not launched_by_spark_submit() and not JAR_SETTINGS & set(config.spark.extra)
    jars = resolved_jars(package) if own_jars else None
    if not launched_by_spark_submit():
        if config.spark.master:
            builder = builder.master(config.spark.master)
        builder = builder.config(*(("spark.jars", ",".join(jars)) if jars else ("spark.jars.packages", package)))
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in session_settings(config).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if own_jars and not jars:
        remember_jars(package, spark.conf.get("spark.jars", ""))
    spark.sparkContext.setLogLevel(config.spark.log_level)
    spark.sparkContext.setCheckpointDir(config.paths.checkpoint_dir)
    log.info("spark %s, master %s", spark.version, spark.sparkContext.master)
    return spark


def clean_checkpoints(spark: SparkSession) -> int:
    """Delete what the session has checkpointed so far; its checkpoint folder stays for the next run.

    Stages hand data on in tables, so no checkpoint outlives the run that wrote it. The
    folder is removed through Hadoop's file system, so it may be local, HDFS or an
    object store, as the checkpoint directory is.

    Returns:
        How many checkpoint folders were deleted.
    """
    folder = spark.sparkContext.getCheckpointDir()
    if not folder:
        return 0
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(folder)
    file_system = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not file_system.exists(path):
        return 0
    entries = file_system.listStatus(path)
    for entry in entries:
        file_system.delete(entry.getPath(), True)
    log.info("deleted %d checkpoint folders under %s", len(entries), folder)
    return len(entries)
