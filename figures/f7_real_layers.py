"""F7: thin wrapper around `ptqtheory.figures.f7_real_layers` (the figure code lives in the package).

Usage: ``python figures/f7_real_layers.py --out out/ [--report ptqtheory-report/report.json] [--quick]``

The report comes from ``ptqtheory validate --out ptqtheory-report`` (run it first); with ``--quick``
and no ``--report``, a small validation is run first instead (about a minute on 2 cores).
"""

import sys

from ptqtheory.figures import f7_real_layers
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f7_real_layers))
