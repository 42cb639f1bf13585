"""Job: quality_gate (see `python jobs/quality_gate.py --help`)."""

import sys

from crm_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(stage="quality_gate"))
