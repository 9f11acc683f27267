"""`faceattr-ray train heads` as a Ray job: python jobs/train_heads.py --features PARQUET --labels TABLE --out BUNDLE"""

from _entry import run

run("train", "heads")
