#!/usr/bin/python3
"""Make the README picture: images side by side (e.g. a CamVid image, its overlay, its colour mask),
each scaled to a common height, separated by a white gap.

    /usr/bin/python3 scripts/readme_picture.py data/camvid/val/0016E5_07959.png \
        out/quickstart/segmented/0016E5_07959_color.png -o docs/images/quickstart.png --height 240

Needs Debian's python3-matplotlib and python3-numpy (call /usr/bin/python3).
"""
import argparse
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", help="PNG files, left to right")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--height", type=int, default=240, help="height of the picture in pixels")
    ap.add_argument("--gap", type=int, default=4)
    args = ap.parse_args()
    import matplotlib.image as mpimg

    tiles = []
    for path in args.images:
        try:
            a = mpimg.imread(path)
        except (OSError, ValueError) as e:
            sys.exit(f"readme_picture: cannot read '{path}': {e}")
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        a = a[..., :3].astype(np.float32)
        # nearest-neighbour rows/columns: labels stay crisp; CamVid's 360 -> 240 is exact enough
        rows = (np.arange(args.height) * a.shape[0] / args.height).astype(int)
        width = round(a.shape[1] * args.height / a.shape[0])
        cols = (np.arange(width) * a.shape[1] / width).astype(int)
        tiles.append(a[rows][:, cols])
        tiles.append(np.ones((args.height, args.gap, 3), np.float32))
    picture = np.concatenate(tiles[:-1], axis=1)
    mpimg.imsave(args.out, np.clip(picture, 0, 1))
    print(f"readme_picture: {picture.shape[1]}x{picture.shape[0]} -> {args.out}")


if __name__ == "__main__":
    main()
