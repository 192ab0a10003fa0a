"""Fail when held-out intent classification is below the target macro F1.

Reads the ``intent_report.json`` that ``rasa test nlu`` writes.
"""
import json
import sys

TARGET_MACRO_F1 = 0.95


def main(path: str) -> int:
    report = json.load(open(path))
    macro = report["macro avg"]["f1-score"]
    worst = sorted(
        (v["f1-score"], k) for k, v in report.items() if isinstance(v, dict) and "support" in v and k not in ("macro avg", "weighted avg", "micro avg")
    )[:3]
    print(f"held-out intent macro F1 = {macro:.3f} (target >= {TARGET_MACRO_F1}); "
          f"weakest: " + ", ".join(f"{name} {f1:.2f}" for f1, name in worst))
    return 0 if macro >= TARGET_MACRO_F1 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "results/nlu/intent_report.json"))
