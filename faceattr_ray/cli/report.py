"""`faceattr-ray report`: a self-contained HTML page about a model and an annotate output."""

from __future__ import annotations

import os


def run(args) -> int:
    """Build the page (`report.build_report`) and say what it holds."""
    from faceattr_ray.evaluation.report import ReportInputs, build_report

    if not args.celeba_root and not args.annotations:
        print("faceattr-ray report: no --celeba-root or --annotations: only the attribute "
              "grouping (from the model's weights) will be drawn")
    report = build_report(ReportInputs(model=args.model, celeba_root=args.celeba_root,
                                       annotations=args.annotations, limit=args.limit),
                          args.out)
    done = [k for k, s in report["sections"].items() if s["status"] == "ok"]
    absent = {k: s["reason"] for k, s in report["sections"].items() if s["status"] != "ok"}
    print(f"wrote {os.path.join(args.out, 'index.html')} and report.json "
          f"({len(done)} sections: {', '.join(done)}) in {report['seconds']} s")
    for k, why in absent.items():
        print(f"  {k}: absent ({why})")
    acc = report["sections"]["accuracy"]
    if acc["status"] == "ok":
        m = acc["mean"]
        print(f"mean accuracy {100 * m['accuracy']:.1f}%, balanced {100 * m['balanced_accuracy']:.1f}%"
              f", majority baseline {100 * m['majority_baseline']:.1f}% on {report['images']} "
              f"images ({report['split']} split)")
    return 0
