"""F3: thin wrapper around `ptqtheory.figures.f3_stochastic` (the figure code lives in the package).

Usage: ``python figures/f3_stochastic.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f3_stochastic
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f3_stochastic))
