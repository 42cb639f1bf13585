"""The one place that builds the SparkSession."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import pyspark
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
OTHER_JAVA_OPTIONS = "spark.driver.defaultJavaOptions"
JAVA_OPTION_VARIABLES = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "SPARK_SUBMIT_OPTS")
# The class-data archive (Java's CDS) a run's JVM writes at its end and later JVMs map, so they load Spark's and
# Delta's classes already parsed and verified. The JVM's notes on it (classes it skips, an archive it cannot use,
# which it then ignores) are not shown. At 100,000 customers (benchmarks/daily.py) a process reached its first
# stage in 17.2 to 18.2 s against 23.0 and 23.5 s without; the run that writes the archive took about 28 s longer.
ARCHIVE_LOGGING = "-Xlog:cds*=off"
ARCHIVE_WRITE = "-XX:ArchiveClassesAtExit="
# What else changes the class path the JVM checks an archive against.
CLASS_PATH_VARIABLES = ("SPARK_CONF_DIR", "SPARK_DIST_CLASSPATH", "HADOOP_CONF_DIR", "YARN_CONF_DIR")
# Archives kept in the cache folder (about 200 MB each), the newest first: one per Java, Spark and jars in use.
KEPT_ARCHIVES = 2


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
    if not re.search(r"-XX:\+Use\w+GC\b", _java_options(config)):
        settings[DRIVER_OPTIONS] = f"{DRIVER_GC} {options}".strip()
    return settings


def _java_options(config: Config) -> str:
    """Return every Java option the driver JVM gets besides crm-spark's: ``spark.extra``'s and the JVM's variables'."""
    return " ".join([config.spark.extra.get(DRIVER_OPTIONS, ""), config.spark.extra.get(OTHER_JAVA_OPTIONS, ""),
                     *(os.environ.get(v, "") for v in JAVA_OPTION_VARIABLES)])


def java_home() -> str | None:
    """Return the folder of the Java runtime a new JVM starts from: ``JAVA_HOME``, else that of
    the ``java`` on the ``PATH`` (None without either)."""
    java = shutil.which("java")
    return os.environ.get("JAVA_HOME") or (str(Path(java).resolve().parents[1]) if java else None)


def java_version() -> str | None:
    """Return the version of that runtime (``JAVA_VERSION`` of its ``release`` file), or None when unknown."""
    try:
        text = (Path(java_home() or "") / "release").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r'^JAVA_VERSION="([^"]+)"', text, re.MULTILINE)
    return found[1] if found else None


def class_archive(jars: Sequence[str]) -> Path | None:
    """Return the class-data archive for this Java, this Spark and ``jars`` (in the user's cache folder).

    Its name hashes what the JVM checks an archive against: the Java runtime's class image,
    Spark's jar folder, the class-path variables and the jars; a change in any of them names
    another archive.

    Returns:
        The archive's path (the file may not exist yet), or None when no Java runtime is found
        or the path holds a space (Spark splits Java options at spaces).
    """
    home = java_home()
    spark_jars = Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent) / "jars"
    try:
        image, folder = (Path(home or "") / "lib" / "modules").stat(), spark_jars.stat()
    except OSError:
        return None
    facts = [home, image.st_size, image.st_mtime_ns, spark_jars, folder.st_mtime_ns, *jars,
             *(os.environ.get(v, "") for v in CLASS_PATH_VARIABLES)]
    digest = hashlib.sha256("\n".join(map(str, facts)).encode()).hexdigest()[:16]
    archive = cache_folder() / f"classes-{digest}.jsa"
    return None if re.search(r"\s", str(archive)) else archive


def class_archive_options(config: Config, archive: Path | None, write: bool) -> str:
    """Return the driver's Java options that map ``archive``, or with ``write`` have the JVM write it at its end.

    The archive is written first to a file of this process (``<archive>.<pid>.partial``),
    which :func:`finish_class_archive` puts in place. Nothing is returned when
    ``spark.class_archive`` is off, when Java options given elsewhere name an archive, or
    when the archive does not exist and ``write`` is false.
    """
    if archive is None or not config.spark.class_archive or re.search(r"SharedArchiveFile|ArchiveClassesAtExit|-Xshare",
                                                                      _java_options(config)):
        return ""
    if archive.is_file():
        return f"-XX:SharedArchiveFile={archive} {ARCHIVE_LOGGING}"
    if not write:
        return ""
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)  # the JVM writes the file, not its folder
    except OSError as error:
        log.info("no class archive: %s", error)
        return ""
    partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    return f"{ARCHIVE_WRITE}{partial} {ARCHIVE_LOGGING}"


def finish_class_archive(spark: SparkSession, seconds: float = 600) -> None:
    """Stop ``spark`` if its JVM is to write a class archive at its end; wait for the JVM, put the archive in place.

    Does nothing for a session that writes no archive. Older archives beyond the newest
    ``KEPT_ARCHIVES``, and partial files left an hour ago or more, are deleted. A JVM that
    does not end within ``seconds``, or an archive it did not write, is logged and left:
    the next run writes one again.
    """
    found = re.search(rf"{ARCHIVE_WRITE}(\S+/classes-\w+\.jsa\.\d+\.partial)", spark.conf.get(DRIVER_OPTIONS, "") or "")
    jvm = getattr(spark.sparkContext._gateway, "proc", None)
    if not found or jvm is None:
        return
    partial = Path(found.group(1))
    log.info("writing the JVM's class archive for faster starts (once): %s", partial.parent)
    began = time.perf_counter()
    spark.stop()
    jvm.stdin.close()  # the gateway JVM ends when its input does
    try:
        jvm.wait(seconds)
    except subprocess.TimeoutExpired:
        log.warning("the JVM did not end within %d s; no class archive written", seconds)
        return
    finally:
        pyspark.SparkContext._gateway = pyspark.SparkContext._jvm = None  # a later session starts a JVM of its own
    if not partial.is_file():
        log.info("the JVM wrote no class archive (exit code %s)", jvm.returncode)
        return
    try:
        partial.replace(partial.with_name(partial.name.split(".")[0] + ".jsa"))
        archives = sorted(partial.parent.glob("classes-*.jsa"), key=lambda path: path.stat().st_mtime, reverse=True)
        stale = [p for p in partial.parent.glob("classes-*.partial") if p.stat().st_mtime < time.time() - 3600]
        for old in [*archives[KEPT_ARCHIVES:], *stale]:
            old.unlink(missing_ok=True)
    except OSError as error:  # another run's files changed meanwhile
        log.info("class archive: %s", error)
        return
    log.info("class archive written in %.1f s", time.perf_counter() - began)


def launched_by_spark_submit() -> bool:
    """Return whether a ``spark-submit`` JVM already runs (it then owns master and jars)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


JAVA_ADVICE = ("Spark needs Java 17, 21 or 25: install a JDK (Debian/Ubuntu: apt install openjdk-17-jre-headless; "
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


def cache_folder() -> Path:
    """Return crm-spark's folder in the user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crm-spark"


def jar_list_file(package: str) -> Path:
    """Return the file that lists the local jars resolved for the Maven ``package`` (in the user's cache folder)."""
    return cache_folder() / f"{re.sub(r'[^A-Za-z0-9._-]', '_', package)}.jars"


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


def build_spark(config: Config, write_class_archive: bool = False) -> SparkSession:
    """Build (or reuse) the SparkSession for a run.

    Under ``spark-submit`` the launcher's master, packages and Python are used;
    otherwise the config's master and Delta package, and Python workers run the
    interpreter of this process (so vectorized UDFs find pandas). So the same code
    runs under ``python``, ``pytest`` and ``spark-submit --master spark://...``.
    A JVM the session starts itself maps the class archive of its Java, Spark and jars
    (:func:`class_archive`) when there is one.

    Args:
        config: the run configuration.
        write_class_archive: without an archive, have the JVM write one at its end; the
            caller then ends the session with :func:`finish_class_archive`.

    Returns:
        A SparkSession with Delta Lake enabled and its checkpoint directory set.

    Raises:
        JavaMissing: a new JVM is needed and no Java runtime is found.
    """
    builder = SparkSession.builder
    new_jvm = not launched_by_spark_submit() and pyspark.SparkContext._gateway is None  # no JVM started yet
    if new_jvm:
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
    settings = session_settings(config)
    if new_jvm and (jars or not own_jars):  # the jars known before start: the archive's name depends on them
        archive = class_archive(jars or sorted(f"{k}={config.spark.extra[k]}" for k in JAR_SETTINGS
                                               if k in config.spark.extra))
        options = class_archive_options(config, archive, write_class_archive)
        if options:
            settings[DRIVER_OPTIONS] = f"{options} {settings.get(DRIVER_OPTIONS, '')}".strip()
    for key, value in settings.items():
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
