"""Settings shared by every suite."""

from hypothesis import settings

# Speed is measured in bench/, not in tests: a loaded 2-core CI machine must not turn a slow
# example into a failure.
settings.register_profile("liqosec", deadline=None)
settings.load_profile("liqosec")
