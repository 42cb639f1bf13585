"""Job: next_day (see `python jobs/next_day.py --help`)."""

import sys

from crm_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(stage="next_day"))
