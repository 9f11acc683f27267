"""`faceattr-ray train anet-pretrain` as a Ray job: python jobs/anet_pretrain.py --data ROOT --out BUNDLE"""

from _entry import run

if __name__ == "__main__":  # a child process (spawned) imports this file too
    run("train", "anet-pretrain")
