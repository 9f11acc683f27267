"""How good a model is: attribute accuracy on a CelebA-layout root (evaluate.py), localization
curves (localization_metrics.py), the paper's analyses as numbers (analysis.py), and the HTML
report that shows them (report/). Accuracy figures themselves are `faceattr_ray.metrics`."""
