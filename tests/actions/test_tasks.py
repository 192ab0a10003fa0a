"""The task registry against domain.yml and the digression rules, so a new form or intent cannot be forgotten."""
from pathlib import Path

import yaml

from actions.tasks import DIGRESSIONS, OTHER_SUGGESTIONS, TASKS, suggestions

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())
RULES = yaml.safe_load((ROOT / "data" / "rules" / "digressions.yml").read_text())["rules"]


def test_every_form_is_a_registered_task_and_back():
    assert set(TASKS) == set(DOMAIN["forms"])


def test_the_registry_names_only_real_intents_and_slots():
    intents = set(DOMAIN["intents"])
    for task in TASKS.values():
        assert set(task.start_intents) <= intents, task.form
        assert set(task.stop_clears) <= set(DOMAIN["slots"]), task.form
    assert set(OTHER_SUGGESTIONS) <= intents and set(DIGRESSIONS) <= intents


def test_the_fallback_suggests_tasks_never_yes_no_or_hello():
    offered = set(suggestions())
    assert offered.isdisjoint({"affirm", "deny", "greet", "say_goodbye", "say_thanks", "out_of_scope"})
    assert {"check_order", "book_appointment", "report_problem", "request_human"} <= offered


def test_no_free_text_slot_takes_a_digression_as_its_value():
    for name, slot in DOMAIN["slots"].items():
        for mapping in slot.get("mappings", []):
            if mapping["type"] == "from_text":
                missing = set(DIGRESSIONS) - set(mapping.get("not_intent") or [])
                assert not missing, f"slot {name}'s from_text mapping would take {sorted(missing)} as a value"


def test_every_form_answers_every_digression():
    covered = {}
    for rule in RULES:
        loops = [c.get("active_loop") for c in rule.get("condition") or [] if "active_loop" in c]
        intents = [step["intent"] for step in rule["steps"] if "intent" in step]
        for loop in loops:
            covered.setdefault(loop, set()).update(intents)
    for form in TASKS:
        assert set(DIGRESSIONS) <= covered.get(form, set()), f"{form} lacks {set(DIGRESSIONS) - covered.get(form, set())}"


def test_every_digression_either_resumes_its_form_or_ends_it():
    # Rasa never runs a rejected form again by itself: a rule that stops after
    # the digression's action leaves the customer's next answer to the fallback.
    for rule in RULES:
        loop = next(c["active_loop"] for c in rule["condition"] if "active_loop" in c)
        last = rule["steps"][-1]
        assert last in ({"active_loop": loop}, {"active_loop": None}), f"{rule['rule']} leaves {loop} hanging"
