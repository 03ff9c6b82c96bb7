"""``ccemu validate``: the calibration cases, predicted against measured, with errors per data set;
``ccemu fit``: refit the model's fitted constants (``--check``: prove the committed ones are the
fit's; ``--write``: write them into the model data file). Both are thin faces of
:mod:`collectives.calibration`."""

from __future__ import annotations

import json

from collectives import calibration
from .errors import check_int, check_output_paths, write_atomic

# Nelder-Mead iterations of ccemu fit: the default 300 takes about a minute on 2 cores (all three groups).
MAX_FIT_ITERS = 100_000


def register(sub):
    p = sub.add_parser("validate", help="model fidelity on published measurements",
                       description="Run the calibration cases and print predicted against measured per point.")
    p.add_argument("--data", default=calibration.DATA_FILE, help="calibration data file (JSON)")
    p.add_argument("-J", "--json", default=None, help="also write the points and errors to this JSON file")
    p.set_defaults(func=main)

    f = sub.add_parser("fit", help="refit the model's fitted constants on the calibration data",
                       description="Fit the network model's per-link-kind, per-switch and per-library constants on the published measurements.")
    f.add_argument("--iters", type=int, default=300, help="Nelder-Mead iterations (default 300)")
    f.add_argument("--check", action="store_true",
                   help="short fit from the committed constants; exit 1 if it improves on them")
    f.add_argument("--write", action="store_true", help="write the fitted constants into the model data file")
    f.set_defaults(func=fit_main)


def main(args) -> int:
    check_output_paths(("-J", args.json))
    datasets = calibration.load(args.data)
    preds = calibration.predictions(None, datasets)
    for name, rows in preds.items():
        ds = datasets[name]
        cond = ds.get("conditions", {})
        print(f"# {name}: {ds['source']}")
        if cond:
            print("#   conditions: " + ", ".join(f"{k}={v}" for k, v in cond.items() if k != "note")
                  + (f" ({cond['note']})" if "note" in cond else ""))
        print(f"  {'x':>14s}  {'measured':>13s}  {'predicted':>10s}  {'error':>7s}        ran")
        for r in rows:
            measured = f"{r['lo']:g}-{r['hi']:g}" if "lo" in r else f"{r['measured']:g}"
            print(f"  {str(r['x']):>14s}  {measured:>13s}  {r['predicted']:10.3f}  {r['error'] * 100:6.1f}%  "
                  f"{r['unit']:<5s} {r.get('ran', '')}")
    summ = calibration.summary(preds, datasets)
    print("\n# absolute relative error per data set (inside a published range counts as 0), and its target")
    print(f"  {'data set':40s}  {'points':>6s}  {'median':>7s}  {'max':>7s}  target")
    for name, s in summ.items():
        target = ", ".join(f"{k} <= {v * 100:g}%" for k, v in s.get("target", {}).items())
        verdict = "" if "met" not in s else ("  met" if s["met"] else "  NOT MET")
        print(f"  {name:40s}  {s['points']:6d}  {s['median'] * 100:6.1f}%  {s['max'] * 100:6.1f}%  {target}{verdict}")
    if args.json:
        write_atomic(args.json, json.dumps({"points": preds, "summary": summ}, indent=2) + "\n")
    return 0


def fit_main(args) -> int:
    from topologies.model import DATA_FILE

    check_int("--iters", args.iters, 1, MAX_FIT_ITERS, "Nelder-Mead iterations")
    if args.check and args.write:
        raise ValueError("--check and --write exclude each other: check the committed constants, or replace them")
    r = calibration.fit(iters=args.iters, short=args.check)
    print(f"nvlink efficiency from the peak figures: {r.efficiency:.4f} (committed {r.committed_efficiency})")
    for g in r.groups:
        print(f"{g.group.name}: objective committed {g.committed_objective:.6f}, fitted {g.objective:.6f}; "
              + ", ".join(f"{k} {v:.4g}" for k, v in g.values.items()))
    if args.write:
        calibration.write_model(r)
        print(f"written to {DATA_FILE} and {calibration.DATA_FILE}")
    if args.check:
        if not r.reproduces_committed:
            print("committed constants are not the fit's: a short fit improves an objective by more than 0.1% "
                  "(or the efficiency differs)")
            return 1
        print("committed constants reproduced: a short fit improves each objective by less than 0.1%")
    return 0
