"""`faceattr-ray evaluate` as a Ray job: python jobs/evaluate.py --model BUNDLE --celeba-root ROOT"""

from _entry import run

run("evaluate")
