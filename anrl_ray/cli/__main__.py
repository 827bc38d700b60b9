"""``python -m anrl_ray.cli``: the anrl-ray command."""

import sys

from anrl_ray.cli import main

sys.exit(main())
