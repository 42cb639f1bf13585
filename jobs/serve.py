"""Job: serve (see `python jobs/serve.py --help`)."""

import sys

from crm_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(stage="serve"))
