"""`faceattr-ray annotate` as a Ray job: python jobs/annotate.py INPUT... --model BUNDLE --output DIR"""

from _entry import run

run("annotate")
