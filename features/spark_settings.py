"""The settings of every Spark session, in a module of its own: ``features.store`` (Feast's
Spark offline store) and ``features.spark`` (the project's session) both read them, and neither
imports the other."""

# Every Spark session the project starts (``features.spark.spark_session``) or Feast's Spark
# offline store starts (``features.store.offline_store``): no web UI, UTC in the JVM and in SQL, Arrow
# transfers, parquet timestamps as UTC microseconds (which pandas, DuckDB and Feast read as UTC).
SESSION_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
# Few partitions: the feature tables of one funnel are small for Spark, and every shuffle
# partition is a task (Spark's default of 200 spends seconds scheduling empty tasks).
DEFAULT_SHUFFLE_PARTITIONS = 4
