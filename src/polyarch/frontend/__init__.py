"""The Dockerfile frontend (pure: no I/O): parse → plan (``polyarch.ops`` graph + image config) → reports.

Entry points: ``plan_build`` (the build engineer's), ``parse_dockerfile``, ``run_checks``, ``call``/``run_call``
(``--call``), and the ``.dockerignore`` matcher for the context loader.
"""

from polyarch.frontend.call import call, run_call
from polyarch.frontend.checks import run_checks
from polyarch.frontend.dockerfile.parse import parse_dockerfile
from polyarch.frontend.dockerignore import ignore_file_candidates, is_excluded, matcher, parse_dockerignore
from polyarch.frontend.plan import BuildPlan, PlatformPlan, StagePlan, Step, plan_build, plan_to_json

__all__ = [
    "BuildPlan", "PlatformPlan", "StagePlan", "Step", "call", "ignore_file_candidates", "is_excluded", "matcher",
    "parse_dockerfile", "parse_dockerignore", "plan_build", "plan_to_json", "run_call", "run_checks",
]
