"""`faceattr-ray evaluate` as a Ray job: python jobs/evaluate.py --model BUNDLE --celeba-root ROOT"""

from _entry import run

if __name__ == "__main__":  # a child process (spawned) imports this file too
    run("evaluate")
