"""`python -m faceattr_ray.cli ...` is `faceattr-ray ...`."""

import sys

from faceattr_ray.cli import main

sys.exit(main())
