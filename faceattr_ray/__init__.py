"""faceattr-ray: face attributes in the wild (LNets+ANet, Liu et al., ICCV 2015) on Ray.

Importing the package is cheap: torch and Ray are imported only by the modules that need them.
"""

__version__ = "0.1.0"
