"""Job: select (see `python jobs/select_features.py --help`).

Named select_features.py because a file select.py here would shadow Python's select module.
"""

import sys

from crm_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(stage="select"))
