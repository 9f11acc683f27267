"""What every job script shares: run a `faceattr-ray` subcommand with the script's arguments.

`ray job submit -- python jobs/annotate.py ...` runs the very code path of `faceattr-ray annotate
...`; the scripts exist so a job names one file and needs no console script on the cluster.
"""

from __future__ import annotations

import os
import sys

# `python jobs/x.py` puts jobs/ on sys.path, not the repository root: add the root so a checkout
# or an uploaded working_dir runs without `pip install` (Ray's working_dir is on sys.path too,
# so the driver and the workers import the same copy of the package).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(REPO_ROOT, "faceattr_ray")) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def run(*command: str) -> None:
    """Exit with the status of `faceattr-ray COMMAND... <this script's arguments>`."""
    from faceattr_ray.cli import main

    sys.exit(main([*command, *sys.argv[1:]]))
