#!/usr/bin/env python3
"""rembg peer for bench/segmentation.sh: for every case of a test set written by
`examples/testset` (order of DIR/manifest.csv), cuts out DIR/<case>/degraded.png with rembg and
MODEL and writes the mask (rembg's `only_mask`, no post-processing, as `rembg i -m MODEL`
would use as alpha) to DIR/<case>/alpha_MODEL.png, and DIR/times_MODEL.csv (name, seconds).

Each time covers opening the PNG, the cut-out and saving the mask, one image at a time; the
session is made once and warmed on the first image first. Threads come from OMP_NUM_THREADS
(rembg sets ONNX Runtime's thread counts from it).

The model file must already be in $U2NET_HOME (the script never lets rembg download it).

With --cutout the timed work is rembg's cut-out as `rembg i -m MODEL` writes it (the RGBA
image, alpha from the mask, saved as PNG to DIR/<case>/cutout_MODEL.png), the job retouch's
remove-bg does; the mask (the cut-out's alpha, the same values) is then saved untimed.

usage: rembg_run.py DIR MODEL [--cutout]
"""
import csv
import os
import sys
import time


def main():
    root, model = sys.argv[1], sys.argv[2]
    cutout = sys.argv[3:] == ["--cutout"]
    if sys.argv[3:] and not cutout:
        sys.exit(f"rembg_run: unknown arguments {sys.argv[3:]} (only --cutout)")
    home = os.environ.get("U2NET_HOME")
    if not home or not os.path.isfile(os.path.join(home, f"{model}.onnx")):
        sys.exit(f"rembg_run: {model}.onnx is not in U2NET_HOME ({home}); refusing to download")
    from PIL import Image
    from rembg import new_session, remove

    with open(os.path.join(root, "manifest.csv"), newline="") as f:
        names = [row["name"] for row in csv.DictReader(f)]
    if not names:
        sys.exit(f"rembg_run: no cases in {root}")
    session = new_session(model)
    remove(Image.open(os.path.join(root, names[0], "degraded.png")), session=session, only_mask=True)
    times = f"times_{model}{'_cutout' if cutout else ''}.csv"
    with open(os.path.join(root, times), "w") as out:
        out.write("name,seconds\n")
        for name in names:
            start = time.perf_counter()
            img = Image.open(os.path.join(root, name, "degraded.png"))
            if cutout:
                cut = remove(img, session=session)
                cut.save(os.path.join(root, name, f"cutout_{model}.png"))
                seconds = time.perf_counter() - start
                cut.getchannel("A").save(os.path.join(root, name, f"alpha_{model}.png"))
            else:
                mask = remove(img, session=session, only_mask=True)
                mask.save(os.path.join(root, name, f"alpha_{model}.png"))
                seconds = time.perf_counter() - start
            out.write(f"{name},{seconds:.4f}\n")
    print(f"rembg {model}: {len(names)} images", file=sys.stderr)


if __name__ == "__main__":
    main()
