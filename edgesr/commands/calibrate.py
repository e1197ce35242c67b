"""``edgesr calibrate``: build a calibration set (.npz) of degraded crops at the tile size."""

import argparse


def register(sub) -> None:
    cal = sub.add_parser("calibrate", help="build a calibration set for INT8 quantization")
    cal.add_argument("-o", "--output", required=True, help="the .npz file to write")
    cal.add_argument("--images", help="an image or a folder of images (default: synthetic)")
    cal.add_argument("--count", type=int, default=32, help="number of crops (default: 32)")
    cal.add_argument("--tile", type=int, default=64, help="crop size in pixels (default: 64)")
    cal.add_argument("--seed", type=int, default=0)
    cal.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgesr.calibration import build_calibration_set

    calib = build_calibration_set(args.images, count=args.count, tile=args.tile, seed=args.seed)
    path = calib.save(args.output)
    print(f"calibration set: {len(calib)} crops of {args.tile}x{args.tile} from "
          f"{calib.meta['source']} (seed {args.seed}) -> {path}")
    return 0
