"""F1: thin wrapper around `ptqtheory.figures.f1_lambda` (the figure code lives in the package).

Usage: ``python figures/f1_lambda.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f1_lambda
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f1_lambda))
