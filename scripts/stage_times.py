"""Each stage's time in a pipeline run (not a pipeline stage): papermill's duration of every executed notebook under
reports/notebooks/ (or the folder given), in seconds, and their sum.
Usage: .venv/bin/python scripts/stage_times.py [reports/notebooks]"""
import json
import pathlib
import sys

folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "reports/notebooks")
total = 0.0
for path in sorted(folder.glob("*.ipynb")):
    seconds = json.loads(path.read_text())["metadata"]["papermill"]["duration"]
    total += seconds
    print(f"{path.stem:40s} {seconds:7.0f} s")
print(f"{'sum':40s} {total:7.0f} s = {total / 60:.1f} min")
