"""Job: daily (see `python jobs/daily.py --help`)."""

import sys

from crm_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(stage="daily"))
