"""Job: training_features (see `python jobs/training_features.py --help`)."""

import sys

from crm_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(stage="training_features"))
