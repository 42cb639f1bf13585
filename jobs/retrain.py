"""Job: retrain (see `python jobs/retrain.py --help`)."""

import sys

from crm_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(stage="retrain"))
