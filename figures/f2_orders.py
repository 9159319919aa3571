"""F2: thin wrapper around `ptqtheory.figures.f2_orders` (the figure code lives in the package).

Usage: ``python figures/f2_orders.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f2_orders
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f2_orders))
