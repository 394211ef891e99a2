"""Hypothesis profiles: derandomized (a fixed seed per test) in CI and in mutation runs, random elsewhere.

`HYPOTHESIS_PROFILE=ci` (set by scripts/mutation.py; CI sets `CI=true`) makes every run draw the same
examples, so a CI failure reproduces with the same command. Elsewhere each run explores new examples;
a failure prints the falsifying example and a `@reproduce_failure` blob to replay it.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
