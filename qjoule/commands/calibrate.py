"""`qjoule calibrate`: fit the energy model to simulated activity and write a calibrated profile."""

from __future__ import annotations

import argparse
import sys

HELP = "fit the energy model to RTL activity (and synthesis area) and write a calibrated profile with a validation report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--activity", nargs="+", required=True, metavar="DIR",
                        help="activity.json files or folders holding them (docs/activity.md)")
    parser.add_argument("--synth", nargs="+", default=[], metavar="REPORT",
                        help="synthesis report.json files (q, p, luts, dsps) giving the area-equal parallelism p(Q)")
    parser.add_argument("--dsp-luts", type=float, default=None, metavar="N",
                        help="LUT equivalents of one DSP block when summing synthesized area (default 100)")
    parser.add_argument("--base", default="moons2017", metavar="PROFILE",
                        help="base profile: its per-bit energies price the toggles and fill what the data lack")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: profile.json (use with qjoule energy --profile DIR), calibration.json and calibration.png")


def run(args: argparse.Namespace) -> int:
    from qjoule.errors import UserError
    from qjoule.io import read_json, staged_output, write_json
    from qjoule.sw.calibrate import DEFAULT_DSP_LUTS, calibrate, find_activity_files, fit_synthesis, read_activity
    from qjoule.sw.energy_profiles import load_profile

    base = load_profile(args.base)
    files = find_activity_files(args.activity)
    samples = [s for f in files for s in read_activity(f, base)]
    synth = None
    if args.synth:
        dsp_luts = DEFAULT_DSP_LUTS if args.dsp_luts is None else args.dsp_luts
        if dsp_luts < 0:
            raise UserError(f"--dsp-luts must be >= 0, got {dsp_luts!r}")
        reports = []
        for path in args.synth:
            data = read_json(path, "synthesis report")
            for r in data if isinstance(data, list) else [data]:
                if not isinstance(r, dict):
                    raise UserError(f"synthesis report {path!r} must hold objects, got {type(r).__name__}")
                reports.append({**r, "_path": path})
        synth = fit_synthesis(reports, base, dsp_luts)
    profile, report = calibrate(samples, base, synth, [str(f) for f in files])

    key = {"activity": [str(f) for f in files], "synth": list(args.synth), "base": args.base, "dsp_luts": args.dsp_luts}
    with staged_output(args.out, "calibrate", key) as stage:
        write_json(stage / "profile.json", profile.to_dict())
        write_json(stage / "calibration.json", report)
        from qjoule.sw.energy_plots import write_calibration_plot
        write_calibration_plot(report, stage / "calibration.png")

    print(f"{'Q':>3} {'E_MAC':>10} {'local':>10} {'main':>10} {'dram':>10} {'held-out err':>13}  ({base.unit})")
    loqo = {r["q"]: r["mean_abs_rel_error"] for r in report["held_out_q"]}
    for q in report["qs"]:
        v = report["per_q"][str(q)]
        cells = " ".join(f"{v[g]:>10.4g}" if g in v else f"{'-':>10}" for g in ("mac", "local", "main", "dram"))
        err = f"{100 * loqo[q]:>12.2f}%" if q in loqo else f"{'-':>13}"
        print(f"{q:>3} {cells} {err}")
    held = report["held_out_layers"]["mean_abs_rel_error"]
    print(f"alpha={report['laws']['alpha']:.4g} mem_alpha={report['laws']['mem_alpha']:.4g} "
          f"held-out layers mean |error| {'-' if held is None else f'{100 * held:.2f}%'}")
    print(f"wrote {args.out}/profile.json, calibration.json and calibration.png", file=sys.stderr)
    return 0
