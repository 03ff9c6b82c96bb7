"""``ccemu validate``: the calibration cases, predicted against measured, with errors per data set."""

from __future__ import annotations

import json

from . import calibration
from .errors import write_atomic


def register(sub):
    p = sub.add_parser("validate", help="model fidelity on published measurements",
                       description="Run the calibration cases and print predicted against measured per point.")
    p.add_argument("--data", default=calibration.DATA_FILE, help="calibration data file (JSON)")
    p.add_argument("-J", "--json", default=None, help="also write the points and errors to this JSON file")
    p.set_defaults(func=main)


def main(args) -> int:
    datasets = calibration.load(args.data)
    preds = calibration.predictions(None, datasets)
    for name, rows in preds.items():
        print(f"# {name}: {datasets[name]['source']}")
        print(f"  {'x':>14s}  {'measured':>13s}  {'predicted':>10s}  {'error':>7s}")
        for r in rows:
            measured = f"{r['lo']:g}-{r['hi']:g}" if "lo" in r else f"{r['measured']:g}"
            print(f"  {str(r['x']):>14s}  {measured:>13s}  {r['predicted']:10.3f}  {r['error'] * 100:6.1f}%  {r['unit']}")
    summ = calibration.summary(preds)
    print("\n# absolute relative error per data set (inside a published range counts as 0)")
    print(f"  {'data set':40s}  {'points':>6s}  {'median':>7s}  {'max':>7s}")
    for name, s in summ.items():
        print(f"  {name:40s}  {s['points']:6d}  {s['median'] * 100:6.1f}%  {s['max'] * 100:6.1f}%")
    if args.json:
        write_atomic(args.json, json.dumps({"points": preds, "summary": summ}, indent=2) + "\n")
    return 0
