"""Files beside the lakehouse (exports, reports), through Hadoop's file system: local, HDFS or an object store."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def _path(spark: SparkSession, location: str):
    """Return the Hadoop path of ``location`` and its file system."""
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(location)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def exists(spark: SparkSession, location: str) -> bool:
    """Return whether a file or folder exists at ``location``."""
    path, fs = _path(spark, location)
    return bool(fs.exists(path))


def delete(spark: SparkSession, location: str) -> None:
    """Delete a file or a folder with everything in it; nothing happens when it is absent."""
    path, fs = _path(spark, location)
    fs.delete(path, True)


def list_names(spark: SparkSession, folder: str) -> list[str]:
    """Return the names of the entries of ``folder``, sorted; none when it is absent."""
    path, fs = _path(spark, folder)
    if not fs.exists(path):
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(path))


def move(spark: SparkSession, source: str, target: str) -> None:
    """Rename ``source`` to ``target`` (whose parent is created); an existing ``target`` is replaced.

    Raises:
        OSError: the file system refused the rename.
    """
    src, fs = _path(spark, source)
    dst, _ = _path(spark, target)
    fs.mkdirs(dst.getParent())
    fs.delete(dst, True)
    if not fs.rename(src, dst):
        raise OSError(f"could not move {source} to {target}")


def single_part(spark: SparkSession, folder: str, target: str) -> None:
    """Move the one data file Spark wrote into ``folder`` to ``target`` and delete ``folder``.

    Raises:
        OSError: ``folder`` holds no data file or more than one.
    """
    parts = [name for name in list_names(spark, folder) if name.startswith("part-")]
    if len(parts) != 1:
        raise OSError(f"expected one data file in {folder}, found {len(parts)}")
    move(spark, f"{folder}/{parts[0]}", target)
    delete(spark, folder)


def drop_checksums(spark: SparkSession, folder: str) -> None:
    """Delete the ``.crc`` files Hadoop's local file system leaves beside the files of ``folder`` (its
    listings hide them, so each is looked for by name)."""
    for name in list_names(spark, folder):
        checksum = f"{folder}/.{name}.crc"
        if exists(spark, checksum):
            delete(spark, checksum)


def write_text(spark: SparkSession, location: str, text: str) -> None:
    """Write ``text`` as UTF-8 to ``location``, replacing the file; written beside it first and then renamed,
    so a reader never sees half a file."""
    partial = f"{location}.partial"
    path, fs = _path(spark, partial)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
    move(spark, partial, location)
    drop_checksums(spark, location.rsplit("/", 1)[0])
    log.info("wrote %s (%d bytes)", location, len(text.encode("utf-8")))
