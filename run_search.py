#!/usr/bin/env python
"""Search ANRL hyperparameters with Ray Tune + Optuna; trials are Ray Train DDP runs.

    python run_search.py --protocol OCI_M                 # synthetic benchmark, sized to the machine
    python run_search.py --protocol OCI_M --data DATA     # converted real datasets (DATA/O, DATA/C, ...)
    python run_search.py --help                           # every option
"""

import sys

from anrl_ray.cli.run import search_main

if __name__ == "__main__":
    sys.exit(search_main())
