"""`faceattr-ray train finetune` as a Ray job: python jobs/finetune.py --data ROOT --init BUNDLE --out BUNDLE"""

from _entry import run

run("train", "finetune")
