"""`faceattr-ray annotate` as a Ray job: python jobs/annotate.py INPUT... --model BUNDLE --output DIR"""

from _entry import run

if __name__ == "__main__":  # a child process (spawned) imports this file too
    run("annotate")
