"""`faceattr-ray models`: the bundled models, what they were trained on, their figures."""

from __future__ import annotations


def _pct(v) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def run(args) -> int:
    from faceattr_ray.bundled import DEFAULT, bundled_models, card, model_path

    names = bundled_models()
    if not names:
        print("no bundled models in this installation")
        return 0
    for name in names:
        c = card(name)
        f = c.get("figures") or {}
        print(f"{name}{'  (default)' if name == DEFAULT else ''}: {model_path(name)}")
        print(f"  trained on: {c.get('trained_on', '?')}")
        print(f"  test split ({f.get('test_images', '?')} faces): mean accuracy "
              f"{_pct(f.get('test_mean_accuracy'))}, mean balanced accuracy "
              f"{_pct(f.get('test_mean_balanced_accuracy'))} (majority "
              f"{_pct(f.get('test_majority_baseline'))})")
        print(f"  localization on {f.get('scenes', '?')} scenes of test faces on held-apart real "
              f"backgrounds: recall {_pct(f.get('scene_recall_iou50'))} at IoU 0.5, "
              f"{f.get('scene_false_per_image', float('nan')):.2f} false detections per image")
        print(f"  licence: {c.get('licence', '?')}")
        print(f"  good for: {c.get('good_for', '?')}; not for: {c.get('not_for', '?')}")
        print(f"  rebuild: {c.get('command', '?')}")
    return 0
