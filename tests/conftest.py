"""Test configuration: single-threaded BLAS and the hypothesis profiles.

BLAS threads are pinned to one before numpy loads: on a 2-core machine OpenBLAS threads that spin
against each other (or against a second process) slow small factorizations by 50x.
Profiles: ``default`` (CI), ``thorough`` (20x the examples, for local runs:
``HYPOTHESIS_PROFILE=thorough python -m pytest``).
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# PTQTHEORY_TEST_DEVICE=cuda: torch's default device for the whole run, so the tensors the tests build
# land there (benchmarks/device/gpu_check.sh runs the torch backend tests on a GPU this way).
if os.environ.get("PTQTHEORY_TEST_DEVICE"):
    import torch

    torch.set_default_device(os.environ["PTQTHEORY_TEST_DEVICE"])

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("default", max_examples=200, **_common)
settings.register_profile("thorough", max_examples=4000, **_common)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.load_profile(PROFILE)
