"""Apache Spark as the engine of the feature build: the session, and DuckDB SQL made Spark SQL.

The build's statements are written once, in DuckDB's dialect (`features/build.py`). For Spark
they go through sqlglot (`sqlglot.transpile(..., read="duckdb", write="spark")`) plus the
rewrites of `to_spark_sql` for what sqlglot leaves alone:

- ``ASOF [LEFT] JOIN r ON <keys> AND l.x >= r.y`` (or ``>``) becomes a plain join on the keys
  and a range: r gains ``lead(y)`` over its keys ordered by y, and a left row matches the r row
  whose [y, next y) holds it, the same single row an ASOF join picks.
- ``POSITIONAL JOIN`` (DuckDB lines tables up by row order, which Spark does not keep) becomes
  an equi-join on a row-id column the caller names.
- DuckDB functions without a sqlglot mapping: ``epoch_us`` -> ``unix_micros``,
  ``list_position`` -> ``array_position``, ``error`` -> ``raise_error``.

pyspark is imported inside the functions: it is an optional dependency group (`spark`) and
its import costs seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import sqlglot
from sqlglot import exp

from core.errors import FunnelError
from features.spark_settings import DEFAULT_SHUFFLE_PARTITIONS, SESSION_CONF

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DEFAULT_MASTER = "local[*]"
# the settings a running session takes (the others are fixed when its JVM starts)
_SQL_CONF = {k: v for k, v in SESSION_CONF.items() if k.startswith("spark.sql.")}
_NEXT = "__asof_next"
_RENAMED_FUNCTIONS = {
    "EPOCH_US": "UNIX_MICROS",
    "LIST_POSITION": "ARRAY_POSITION",
    "ERROR": "RAISE_ERROR",
}


class SparkUnavailableError(FunnelError, RuntimeError):
    """pyspark or a Java runtime is missing, so Spark (the feature engine or batch scoring)
    cannot start."""


# what to do instead, in every message that says Spark cannot start
_INSTEAD = "or stay on one machine (feature_store.engine=duckdb, funnel score --engine local)"


def check_spark_available() -> None:
    """Raise `SparkUnavailableError` saying what to install when pyspark or Java is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise SparkUnavailableError(
            "Spark needs pyspark: run `make setup` (it installs the `spark` dependency group) "
            + _INSTEAD
        ) from exc
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise SparkUnavailableError(
            "Spark needs a Java runtime (17 or newer) on PATH or in JAVA_HOME: install one "
            "(e.g. `apt-get install openjdk-17-jre-headless`) " + _INSTEAD
        )
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SparkUnavailableError(f"Spark: `{java} -version` failed: {exc}")


def spark_session(
    master: str = DEFAULT_MASTER, shuffle_partitions: int = DEFAULT_SHUFFLE_PARTITIONS
) -> SparkSession:
    """The process's Spark session (started on first use), for the feature engine and for
    batch scoring: UTC, no web UI, Arrow transfers, parquet timestamps as UTC microseconds
    (which pandas, DuckDB and Feast read as UTC).

    A session already running keeps its master; the SQL settings are applied to it.
    """
    check_spark_available()
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:
        if master.startswith("local"):
            # PySpark starts its Python workers (mapInPandas) with $PYSPARK_PYTHON, else
            # whatever `python3` is on PATH: this interpreter has the project installed
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.master(master).appName("funnel")
        for key, value in SESSION_CONF.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
    for key, value in {
        **_SQL_CONF,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
    }.items():
        session.conf.set(key, value)
    return session


def to_spark_sql(sql: str, positional_key: str | None = None) -> str:
    """One DuckDB SELECT as Spark SQL (see the module docstring for the rewrites).

    `positional_key`: the row-id column both sides of every POSITIONAL JOIN carry.
    """
    tree = sqlglot.parse_one(sql, read="duckdb")
    tree = tree.transform(_rename_functions)
    for join in list(tree.find_all(exp.Join)):
        method = (join.args.get("method") or "").upper()
        if method == "ASOF":
            _rewrite_asof(join)
        elif method == "POSITIONAL":
            _rewrite_positional(join, positional_key)
    return tree.sql(dialect="spark")


def _rename_functions(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Anonymous):
        name = str(node.this).upper()
        if name in _RENAMED_FUNCTIONS:
            return exp.Anonymous(this=_RENAMED_FUNCTIONS[name], expressions=node.expressions)
    return node


def _conjuncts(condition: exp.Expression) -> list[exp.Expression]:
    if isinstance(condition, exp.And):
        return [*_conjuncts(condition.left), *_conjuncts(condition.right)]
    if isinstance(condition, exp.Paren):
        return _conjuncts(condition.this)
    return [condition]


def _refers_to(node: exp.Expression, alias: str) -> bool:
    return any(c.table == alias for c in node.find_all(exp.Column))


def _rewrite_asof(join: exp.Join) -> None:
    """ASOF [LEFT] JOIN -> [LEFT] JOIN on the equality keys and [y, lead(y)) of the right side."""
    right = join.this
    alias = right.alias_or_name
    keys: list[str] = []
    inequality: tuple[exp.Expression, exp.Column, bool] | None = None  # (left expr, y, strict)
    for cond in _conjuncts(join.args["on"]):
        if isinstance(cond, exp.EQ):
            side = cond.right if _refers_to(cond.right, alias) else cond.left
            if not isinstance(side, exp.Column):
                raise TypeError(f"ASOF join key must be a column of {alias}: {cond.sql()}")
            keys.append(side.name)
            continue
        # normalized to `probe >= bound` / `probe > bound`, bound a column of the right side
        if isinstance(cond, (exp.GTE, exp.GT)):
            probe, bound, strict = cond.left, cond.right, isinstance(cond, exp.GT)
        elif isinstance(cond, (exp.LTE, exp.LT)):
            probe, bound, strict = cond.right, cond.left, isinstance(cond, exp.LT)
        else:
            raise NotImplementedError(f"ASOF condition not supported for Spark: {cond.sql()}")
        if not (isinstance(bound, exp.Column) and bound.table == alias) or _refers_to(probe, alias):
            raise NotImplementedError(f"ASOF condition not supported for Spark: {cond.sql()}")
        inequality = (probe, bound, strict)
    if inequality is None:
        raise ValueError(f"ASOF join without an inequality: {join.sql()}")
    probe, bound, strict = inequality
    window = exp.Window(
        this=exp.Anonymous(this="LEAD", expressions=[exp.column(bound.name)]),
        partition_by=[exp.column(k) for k in keys] or None,
        order=exp.Order(expressions=[exp.Ordered(this=exp.column(bound.name))]),
    )
    if isinstance(right, exp.Table):
        source: exp.Expression = exp.Table(this=right.this.copy(), db=right.args.get("db"))
    else:
        source = exp.Subquery(this=right.this.copy(), alias=exp.TableAlias(this="__asof_src"))
    ranged = exp.select(exp.Star(), exp.alias_(window, _NEXT)).from_(source)
    join.set("this", exp.Subquery(this=ranged, alias=exp.TableAlias(this=exp.to_identifier(alias))))
    nxt = exp.column(_NEXT, table=alias)
    below = exp.LTE if strict else exp.LT  # x > y pairs with x <= next; x >= y with x < next
    upper = exp.Or(
        this=below(this=probe.copy(), expression=nxt), expression=nxt.copy().is_(exp.null())
    )
    join.set("on", exp.and_(join.args["on"], exp.Paren(this=upper)))
    join.set("method", None)


def _rewrite_positional(join: exp.Join, key: str | None) -> None:
    """POSITIONAL JOIN t -> JOIN t ON <first table>.key = t.key."""
    if key is None:
        raise ValueError("a POSITIONAL JOIN needs positional_key for Spark")
    select = join.find_ancestor(exp.Select)
    first = select.args["from_"].this.alias_or_name
    alias = join.this.alias_or_name
    join.set("on", exp.column(key, table=first).eq(exp.column(key, table=alias)))
    join.set("method", None)


class SparkSql:
    """Runs the feature build's statements on a Spark session: temporary tables are cached
    DataFrames registered as temporary views."""

    def __init__(self, session: SparkSession, positional_key: str | None = None) -> None:
        self.session = session
        self.positional_key = positional_key
        self._cached: dict[str, DataFrame] = {}
        # Feast's Spark offline store turns this on; it would read `quoted` names as regexes.
        session.conf.set("spark.sql.parser.quotedRegexColumnNames", "false")

    def sql(self, query: str) -> DataFrame:
        return self.session.sql(to_spark_sql(query, self.positional_key))

    def register(self, name: str, frame: pd.DataFrame) -> None:
        self._keep(name, self.session.createDataFrame(_arrow(frame)))

    def read_parquet(self, name: str, path: Path) -> None:
        self.session.read.parquet(str(path)).createOrReplaceTempView(name)

    def table(self, name: str, query: str) -> None:
        self._keep(name, self.sql(query))

    def view(self, name: str, query: str) -> None:
        self.sql(query).createOrReplaceTempView(name)

    def drop(self, *names: str) -> None:
        for name in names:
            frame = self._cached.pop(name, None)
            if frame is not None:
                frame.unpersist()
            self.session.catalog.dropTempView(name)

    def rows(self, query: str) -> list[tuple]:
        return [tuple(row) for row in self.sql(query).collect()]

    def columns(self, name: str) -> list[str]:
        return list(self.session.table(name).columns)

    def frame(self, query: str) -> pd.DataFrame:
        """A query's result in pandas; timestamps as UTC-aware (Spark hands them over naive)."""
        out = self.sql(query).toPandas()
        for column in out.columns:
            if pd.api.types.is_datetime64_dtype(out[column]):
                out[column] = out[column].dt.tz_localize("UTC")
        return out

    def write_parquet(self, name: str, path: Path) -> int:
        """Write a view to one parquet file (zstd) at `path`; returns its row count."""
        frame = self.session.table(name)
        parts = path.with_name(path.name + ".parts")
        frame.coalesce(1).write.mode("overwrite").option("compression", "zstd").parquet(str(parts))
        files = sorted(parts.glob("part-*.parquet"))
        if len(files) != 1:
            raise RuntimeError(f"Spark wrote {len(files)} parquet files for {name}, expected 1")
        os.replace(files[0], path)
        shutil.rmtree(parts)
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)

    @contextmanager
    def ordered(self) -> Iterator[None]:
        """Row order has no meaning in Spark (POSITIONAL JOINs become joins on the row id)."""
        yield

    def close(self) -> None:
        self.drop(*list(self._cached))

    def _keep(self, name: str, frame: DataFrame) -> None:
        self.drop(name)
        frame = frame.cache()
        frame.count()  # materialize now, like DuckDB's CREATE TABLE
        frame.createOrReplaceTempView(name)
        self._cached[name] = frame


def _arrow(frame: pd.DataFrame):
    """A pandas frame as an Arrow table Spark accepts: all-null object columns become strings."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema
    ]
    return table.cast(pa.schema(fields)) if fields != list(table.schema) else table
