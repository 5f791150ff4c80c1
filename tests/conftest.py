import os

from hypothesis import HealthCheck, settings

# One profile for everyone: no deadlines (a 2-core CI box is noisy), modest example counts.
settings.register_profile(
    "default", deadline=None, max_examples=50, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
