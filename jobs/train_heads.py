"""`faceattr-ray train heads` as a Ray job: python jobs/train_heads.py --features PARQUET --labels TABLE --out BUNDLE"""

from _entry import run

if __name__ == "__main__":  # a child process (spawned) imports this file too
    run("train", "heads")
