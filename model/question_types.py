"""Which kind of question this is, among the kinds a reader can be trained on.

A reader trained on a few question forms answers every question in the shape of one of them
("What is the annual fee?" -> "91 days"), so a question outside its trained forms is the
strongest single sign that an answer is noise. The forms are the bAbI tasks' question
templates and the document-fact templates (`model.babi.needle_kind`); a model directory's
`train_config.json` says which of them the reader was trained on.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from model.babi import needle_kind
from model.code_facts import code_fact_kind, code_fact_slots

_WORD = re.compile(r"\w+")

# bAbI question forms (tasks 1-5 as this project generates and the official files phrase them).
_BABI_FORMS: dict[str, re.Pattern] = {
    "qa1": re.compile(r"^Where is (?!the\b)[A-Z][a-z]+\s*\?$"),
    "qa2": re.compile(r"^Where is the [a-z]+\s*\?$"),
    "qa3": re.compile(r"^Where was the [a-z]+ before the [a-z]+\s*\?$"),
    "qa4": re.compile(r"^What is (the [a-z]+ (north|south|east|west) of|(north|south|east|west) of the [a-z]+)\s*\?$"),
    "qa5": re.compile(r"^(Who (gave|received) the [a-z]+\s*\?|What did [A-Z][a-z]+ give to [A-Z][a-z]+\s*\?|Who gave the [a-z]+ to [A-Z][a-z]+\s*\?|"
                      r"Who did [A-Z][a-z]+ give the [a-z]+ to\s*\?)$"),
}


# Words that say what kind of question it is, not what it is about.
FUNCTION_WORDS = frozenset(
    "a an and are as at be by did do does for from had has have how in into is it its of on or that the this to was were what "
    "when where which who whom whose why with".split()
)


def content_words(question: str) -> list[str]:
    """The question's words that say what it is about, in order, once each (of a code-fact
    question, only the names it asks about)."""
    slots = code_fact_slots(question)
    text = " ".join(slots) if slots is not None else question
    return [w for w in dict.fromkeys(_WORD.findall(text.lower())) if w not in FUNCTION_WORDS]


def question_type(question: str) -> str | None:
    """"qa1".."qa5", "needle" (a document fact), "code" (a code fact, `model.code_facts`), or
    None for any other question."""
    text = " ".join(question.split())
    for task, form in _BABI_FORMS.items():
        if form.match(text):
            return task
    if code_fact_kind(text) is not None:
        return "code"
    return "needle" if needle_kind(text) is not None else None


def trained_types(model_dir: str | Path) -> list[str] | None:
    """The question types a reader was trained on, from its `train_config.json` ("tasks", and
    "needle" when needles were mixed in); None when the directory has no such record."""
    path = Path(model_dir) / "train_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    types = [task for task in config.get("tasks", []) if isinstance(task, str)]
    if (config.get("needle_probability") or 0) > 0 and "needle" not in types:
        types.append("needle")
    return types
