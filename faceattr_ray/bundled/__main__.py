"""`python -m faceattr_ray.bundled RUN_DIR`: install a reproduce run as a bundled model."""

import sys

from faceattr_ray.bundled import main

sys.exit(main())
