"""`faceattr-ray train lnet-pretrain` as a Ray job: python jobs/lnet_pretrain.py --data DIR --out BUNDLE"""

from _entry import run

run("train", "lnet-pretrain")
