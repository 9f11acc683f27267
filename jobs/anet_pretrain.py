"""`faceattr-ray train anet-pretrain` as a Ray job: python jobs/anet_pretrain.py --data ROOT --out BUNDLE"""

from _entry import run

run("train", "anet-pretrain")
