#!/usr/bin/env python3
"""GrabCut baseline for bench/quality.sh: for every case dir under DIR, runs OpenCV GrabCut on
degraded.png initialised with a rectangle inset 5% from the border (5 iterations) and writes
grabcut.png (255 = product)."""
import os
import subprocess
import sys

try:
    import cv2
    import numpy as np
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "opencv-python-headless", "numpy"])
    import cv2
    import numpy as np


def run(case_dir):
    img = cv2.imread(os.path.join(case_dir, "degraded.png"), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    dx, dy = max(1, int(w * 0.05)), max(1, int(h * 0.05))
    mask = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(img, mask, (dx, dy, w - 2 * dx, h - 2 * dy), bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
    out = np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    cv2.imwrite(os.path.join(case_dir, "grabcut.png"), out)


def main():
    root = sys.argv[1]
    dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    for d in dirs:
        run(os.path.join(root, d))
    print(f"grabcut: {len(dirs)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
