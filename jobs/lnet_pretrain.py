"""`faceattr-ray train lnet-pretrain` as a Ray job: python jobs/lnet_pretrain.py --data DIR --out BUNDLE"""

from _entry import run

if __name__ == "__main__":  # a child process (spawned) imports this file too
    run("train", "lnet-pretrain")
