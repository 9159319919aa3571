"""F6: thin wrapper around `ptqtheory.figures.f6_incoherence` (the figure code lives in the package).

Usage: ``python figures/f6_incoherence.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f6_incoherence
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f6_incoherence))
