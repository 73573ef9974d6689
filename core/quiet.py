"""Hide library chatter that tells a funnel user nothing: MLflow's schema-migration INFO lines and
pyfunc hints, SQLAlchemy's deprecation inside MLflow. Real warnings and errors still show.

Called when a job starts and again after MLflow is imported (MLflow and Feast install their own
warning filters at import, ahead of earlier ones).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings


def quiet_libraries() -> None:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    if not sys.stderr.isatty():  # progress bars in a log file are noise
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # psycopg warns "error ignored terminating <psycopg.Pipeline [INERROR]>: pipeline aborted"
    # when a pipelined statement of Optuna's or MLflow's fails and the library handles it
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method")
    warnings.filterwarnings("ignore", message=r".*The ``noload`` loader strategy is deprecated")
