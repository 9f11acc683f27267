"""`faceattr-ray train finetune` as a Ray job: python jobs/finetune.py --data ROOT --init BUNDLE --out BUNDLE"""

from _entry import run

if __name__ == "__main__":  # a child process (spawned) imports this file too
    run("train", "finetune")
