"""Each stage's time in a pipeline run (not a pipeline stage): papermill's duration of every executed notebook under
reports/notebooks/ (or the folder given), in seconds, and their sum.
Usage: .venv/bin/python scripts/stage_times.py [reports/notebooks]"""
import argparse
import json
import pathlib


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=pathlib.Path, default=pathlib.Path("reports/notebooks"),
                        help="folder of papermill-executed notebooks (default: reports/notebooks)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    folder = parse_args(argv).folder
    total = 0.0
    for path in sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith(".")):  # not a file being written
        seconds = json.loads(path.read_text())["metadata"]["papermill"].get("duration")
        if seconds is None:  # papermill writes the duration when the notebook ends: a run in progress or killed
            print(f"{path.stem:40s} not finished")
            continue
        total += seconds
        print(f"{path.stem:40s} {seconds:7.0f} s")
    print(f"{'sum':40s} {total:7.0f} s = {total / 60:.1f} min")


if __name__ == "__main__":
    main()
