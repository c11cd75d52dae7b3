"""bAbI stories: the official files, our own generator, and needle facts.

A `BabiSample` is one question over the story statements before it. The official en-10k
files give qa1-qa5; `generate_babi` makes unlimited stories with the same semantics and
vocabulary by simulating a small world, so answers and supporting facts are correct by
construction and training is not limited to the files (nor needs them). `generate_needle`
makes single-fact lookups in document-like wording, a second skill for real corpora.
"""
from __future__ import annotations

import re
from bisect import bisect
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

TASKS = ("qa1", "qa2", "qa3", "qa4", "qa5")

# The official files' vocabulary.
ACTORS = ("Mary", "John", "Daniel", "Sandra")
QA5_ACTORS = ("Fred", "Bill", "Jeff", "Mary")
# A wider cast for generated stories: with only the official four names a small model can lean
# on priors ("the last place named"); with many, only finding whose move it was pays.
MORE_ACTORS = (
    "Anna", "Ben", "Carla", "David", "Emma", "Felix", "Grace", "Henry", "Irene", "Jack", "Kate",
    "Leo", "Lucy", "Max", "Nina", "Oscar", "Paul", "Rosa", "Sam", "Tom", "Vera", "Will",
    "Alice", "Bob", "Clara", "Ethan", "Julia", "Mark", "Peter", "Sophie",
)
PLACES = ("bathroom", "hallway", "garden", "office", "bedroom", "kitchen")
OBJECTS = ("football", "apple", "milk")
MOVE_VERBS = ("moved", "went", "journeyed", "travelled", "went back")
TAKE_VERBS = ("picked up", "got", "grabbed", "took")
DROP_VERBS = ("dropped", "left", "discarded", "put down")
GIVE_VERBS = ("gave", "handed", "passed")
DIRECTIONS = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}

# Story lengths (statements before the question) when `num_facts` is not given: about the
# official files' range, which has medians 6, 14, 42, 2 and 16.
NUM_FACTS = {"qa1": (2, 10), "qa2": (2, 30), "qa3": (4, 60), "qa4": (2, 2), "qa5": (2, 30)}


@dataclass
class BabiSample:
    """One question over a story; `supporting` indexes `facts`, ascending."""

    facts: list[str]
    question: str
    answer: str
    supporting: list[int]
    task: str
    story: int = field(default=0, compare=False)  # which story of its file, for `split_babi`


# --- the official files -------------------------------------------------------------------


def parse_babi(path: str | Path, task: str | None = None) -> list[BabiSample]:
    """Every question of an official bAbI file with the story statements before it."""
    path = Path(path)
    if task is None:
        match = re.match(r"(qa\d+)_", path.name)
        if not match:
            raise ValueError(f"cannot tell the task from the file name {path.name!r}; pass task=")
        task = match.group(1)
    samples: list[BabiSample] = []
    facts: list[str] = []
    line_to_fact: dict[int, int] = {}
    story = -1
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        number, text = raw.split(" ", 1)
        if number == "1":
            facts, line_to_fact, story = [], {}, story + 1
        if "\t" in text:
            question, answer, support = text.split("\t")[:3]
            supporting = sorted(line_to_fact[int(i)] for i in support.split())
            samples.append(BabiSample(list(facts), question.strip(), answer.strip(), supporting, task, story))
        else:
            line_to_fact[int(number)] = len(facts)
            facts.append(text.strip())
    return samples


def babi_files(directory: str | Path, split: str = "train") -> dict[str, Path]:
    """The qa1-qa5 files of one split in a bAbI folder, by task (missing tasks are absent)."""
    found = {}
    for path in sorted(Path(directory).glob(f"qa*_*_{split}.txt")):
        task = path.name.split("_", 1)[0]
        if task in TASKS:
            found[task] = path
    return found


def split_babi(
    samples: Sequence[BabiSample], val_fraction: float, seed: int = 0
) -> tuple[list[BabiSample], list[BabiSample]]:
    """(train, validation) split by story, so validation stories are never seen in training."""
    stories = sorted({(s.task, s.story) for s in samples})
    order = np.random.default_rng(seed).permutation(len(stories))
    n_val = round(len(stories) * val_fraction)
    held = {stories[i] for i in order[:n_val]}
    train = [s for s in samples if (s.task, s.story) not in held]
    val = [s for s in samples if (s.task, s.story) in held]
    return train, val


_MOVE = re.compile(r"^(\w+) (?:moved|went|journeyed|travelled|went back) to the (\w+)\.$")


def where_is_questions(facts: Sequence[str]) -> list[tuple[str, str]]:
    """qa1's every question the statements answer: ("Where is Mary?", "kitchen") for each
    actor, by their latest move, in order of first appearance. Statements that are not moves
    (other tasks' kinds) are ignored; a story without moves has no questions."""
    place: dict[str, str] = {}
    for fact in facts:
        match = _MOVE.match(fact)
        if match:
            place[match.group(1)] = match.group(2)
    return [(f"Where is {actor}?", where) for actor, where in place.items()]


# --- our own generator --------------------------------------------------------------------


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


class _World:
    """Actors, objects and places for qa1-qa3 and qa5, with what a reader can know.

    Every actor and object has a true place from the start (hidden until a statement
    reveals it); a question is only asked when the statements determine its answer.
    """

    def __init__(self, actors: Sequence[str], rng: np.random.Generator):
        self.rng = rng
        self.facts: list[str] = []
        self.place = {a: _pick(rng, PLACES) for a in actors}
        self.last_move: dict[str, int] = {}  # actor -> fact index of their latest move
        self.holder: dict[str, str | None] = {o: None for o in OBJECTS}
        self.lies_at = {o: _pick(rng, PLACES) for o in OBJECTS}  # place of an object nobody holds
        self.touched: dict[str, tuple[str, int]] = {}  # object -> (actor, fact) of its latest take/drop/give
        self.dropped_move: dict[str, int | None] = {}  # object -> the move that placed its dropper
        # object -> its known places in order: (place, fact of the move that got it there, actor)
        self.trail: dict[str, list[tuple[str, int, str]]] = {o: [] for o in OBJECTS}
        self.gives: list[tuple[str, str, str, int]] = []  # (giver, object, receiver, fact)

    def _say(self, text: str) -> int:
        self.facts.append(text)
        return len(self.facts) - 1

    def move(self, actor: str) -> None:
        place = _pick(self.rng, [p for p in PLACES if p != self.place[actor]])
        i = self._say(f"{actor} {_pick(self.rng, MOVE_VERBS)} to the {place}.")
        self.place[actor], self.last_move[actor] = place, i
        for obj, holder in self.holder.items():
            if holder == actor:
                self.trail[obj].append((place, i, actor))

    def take(self, actor: str, obj: str, there: bool) -> None:
        i = self._say(f"{actor} {_pick(self.rng, TAKE_VERBS)} the {obj}{' there' if there else ''}.")
        self.holder[obj], self.touched[obj] = actor, (actor, i)
        if not self.trail[obj] and actor in self.last_move:
            self.trail[obj].append((self.place[actor], self.last_move[actor], actor))

    def drop(self, actor: str, obj: str, there: bool) -> None:
        i = self._say(f"{actor} {_pick(self.rng, DROP_VERBS)} the {obj}{' there' if there else ''}.")
        self.holder[obj], self.lies_at[obj], self.touched[obj] = None, self.place[actor], (actor, i)
        self.dropped_move[obj] = self.last_move.get(actor)

    def give(self, giver: str, obj: str, receiver: str) -> None:
        i = self._say(f"{giver} {_pick(self.rng, GIVE_VERBS)} the {obj} to {receiver}.")
        self.holder[obj], self.touched[obj] = receiver, (receiver, i)
        self.gives.append((giver, obj, receiver, i))

    def actions(self, kinds: dict[str, float], take_there: float) -> list[tuple[float, Callable[[], None]]]:
        """Every possible next statement with its weight (the kind's weight split evenly)."""
        rng = self.rng
        by_kind: dict[str, list[Callable[[], None]]] = {k: [] for k in kinds}
        for actor in self.place:
            by_kind["move"].append(lambda a=actor: self.move(a))
            for obj in OBJECTS:
                holder = self.holder[obj]
                if "take" in kinds and holder is None and self.lies_at[obj] == self.place[actor]:
                    by_kind["take"].append(lambda a=actor, o=obj: self.take(a, o, rng.random() < take_there))
                if "drop" in kinds and holder == actor:
                    by_kind["drop"].append(lambda a=actor, o=obj: self.drop(a, o, rng.random() < 0.2))
                if "give" in kinds and holder == actor:
                    for other in self.place:
                        if other != actor and self.place[other] == self.place[actor]:
                            by_kind["give"].append(lambda a=actor, o=obj, b=other: self.give(a, o, b))
        return [(kinds[k] / len(acts), act) for k, acts in by_kind.items() for act in acts]

    # Questions: (question, answer, supporting facts) that the statements determine.

    def where_is_actor(self) -> list[tuple[str, str, list[int]]]:
        """qa1: an actor is where their latest move took them."""
        return [(f"Where is {a}?", self.place[a], [i]) for a, i in self.last_move.items()]

    def where_is_object(self) -> list[tuple[str, str, list[int]]]:
        """qa2: an object is where its carrier (or, dropped, its dropper then) was seen going."""
        found = []
        for obj, (actor, i) in self.touched.items():
            holder = self.holder[obj]
            if holder is not None and holder in self.last_move:  # carried by a placed actor
                found.append((f"Where is the {obj}?", self.place[holder], [i, self.last_move[holder]]))
            elif holder is None and self.dropped_move.get(obj) is not None:  # dropped by a placed actor
                found.append((f"Where is the {obj}?", self.lies_at[obj], [i, self.dropped_move[obj]]))
        return found

    def where_was_object(self) -> list[tuple[str, str, list[int]]]:
        """'Where was the O before the P?' about the object's latest move, by its last carrier."""
        found = []
        for obj, trail in self.trail.items():
            if len(trail) < 2 or obj not in self.touched:
                continue
            (before, m1, a1), (place, m2, a2) = trail[-2], trail[-1]
            carrier, i = self.touched[obj]
            earlier_places = {p for p, _, _ in trail[:-1]}
            if a1 == a2 == carrier and place not in earlier_places:
                found.append((f"Where was the {obj} before the {place}?", before, [i, m1, m2]))
        return found

    def who_gave(self) -> list[tuple[str, str, list[int]]]:
        """qa5 questions about any hand-over that is the latest one matching the question."""
        found = []
        for n, (giver, obj, receiver, i) in enumerate(self.gives):
            later = self.gives[n + 1 :]
            forms = [
                (f"What did {giver} give to {receiver}?", obj, lambda g: (g[0], g[2]) == (giver, receiver)),
                (f"Who gave the {obj} to {receiver}?", giver, lambda g: (g[1], g[2]) == (obj, receiver)),
                (f"Who did {giver} give the {obj} to?", receiver, lambda g: (g[0], g[1]) == (giver, obj)),
                (f"Who gave the {obj}?", giver, lambda g: g[1] == obj),
                (f"Who received the {obj}?", receiver, lambda g: g[1] == obj),
            ]
            found += [(q, a, [i]) for q, a, matches in forms if not any(matches(g) for g in later)]
        return found


# Per task: cast, statement kinds with weights, how often a take says "there", the questions.
_WORLD_TASKS = {
    "qa1": (ACTORS, {"move": 1.0}, 0.0, _World.where_is_actor),
    "qa2": (ACTORS, {"move": 0.6, "take": 0.25, "drop": 0.15}, 1.0, _World.where_is_object),
    "qa3": (ACTORS, {"move": 0.6, "take": 0.25, "drop": 0.15}, 0.2, _World.where_was_object),
    "qa5": (QA5_ACTORS, {"move": 0.4, "take": 0.2, "drop": 0.1, "give": 0.3}, 1.0, _World.who_gave),
}


def _world_story(task: str, num_facts: int, rng: np.random.Generator, cast: Sequence[str] | None = None) -> BabiSample | None:
    actors, kinds, take_there, questions = _WORLD_TASKS[task]
    if cast is not None:  # as many actors as the task has, drawn from `cast`
        actors = [cast[int(i)] for i in rng.choice(len(cast), size=len(actors), replace=False)]
    world = _World(actors, rng)
    for _ in range(num_facts):
        actions = world.actions(kinds, take_there)
        cumulative = list(accumulate(w for w, _ in actions))
        actions[bisect(cumulative, rng.random() * cumulative[-1], hi=len(actions) - 1)][1]()
    candidates = questions(world)
    if not candidates:
        return None
    question, answer, supporting = _pick(rng, candidates)
    return BabiSample(world.facts, question, answer, sorted(set(supporting)), task)


def _relations_story(num_facts: int, rng: np.random.Generator) -> BabiSample:
    """qa4: places laid out on a grid, each statement links a new place to a placed one."""
    names = [PLACES[i] for i in rng.permutation(len(PLACES))]
    at = {names[0]: (0, 0)}
    facts, relations = [], []  # relations: (a, direction, b) meaning "a is direction of b"
    for new in names[1 : num_facts + 1]:
        free = [
            (old, d)
            for old, (x, y) in at.items()
            for d, (dx, dy) in DIRECTIONS.items()
            if (x + dx, y + dy) not in at.values()
        ]
        old, d = _pick(rng, free)
        at[new] = (at[old][0] + DIRECTIONS[d][0], at[old][1] + DIRECTIONS[d][1])
        a, d, b = (new, d, old) if rng.random() < 0.5 else (old, OPPOSITE[d], new)
        facts.append(f"The {a} is {d} of the {b}.")
        relations.append((a, d, b))
    n = int(rng.integers(len(facts)))
    a, d, b = relations[n]
    question, answer = _pick(
        rng,
        [
            (f"What is {d} of the {b}?", a),
            (f"What is the {a} {d} of?", b),
            (f"What is {OPPOSITE[d]} of the {a}?", b),
            (f"What is the {b} {OPPOSITE[d]} of?", a),
        ],
    )
    return BabiSample(facts, question, answer, [n], "qa4")


def generate_babi(task: str, rng: np.random.Generator, num_facts: int | None = None, cast: Sequence[str] | None = None) -> BabiSample:
    """A fresh qa1-qa5 story of `num_facts` statements (random, file-like length if None);
    with `cast`, qa1-qa3 and qa5 draw their actors from it instead of the official names."""
    if task not in TASKS:
        raise ValueError(f"unknown bAbI task {task!r}; expected one of {', '.join(TASKS)}")
    if num_facts is None:
        low, high = NUM_FACTS[task]
        num_facts = int(rng.integers(low, high + 1))
    if task == "qa4":
        if not 1 <= num_facts < len(PLACES):
            raise ValueError(f"qa4 needs 1 to {len(PLACES) - 1} facts, got {num_facts}")
        return _relations_story(num_facts, rng)
    for _ in range(1000):  # retry until the story determines some question's answer
        sample = _world_story(task, num_facts, rng, cast)
        if sample is not None:
            return sample
    raise ValueError(f"{task} stories of {num_facts} facts rarely determine an answer; use more facts")


# --- needle facts -------------------------------------------------------------------------

_TERMS = (
    "termination notice period", "warranty period", "probation period", "payment term",
    "cancellation window", "lease term", "trial period", "data retention period",
    "refund window", "response deadline", "grace period", "review cycle",
)
_DOCUMENTS = (
    "invoice", "purchase order", "quarterly budget", "shipping estimate", "repair quote",
    "consulting fee", "annual license", "travel expense report", "catering order", "legal settlement",
)
_VERBS = ("parse", "load", "save", "compute", "validate", "render", "fetch", "merge", "encode", "resolve")
_NOUNS = ("config", "user", "invoice", "token", "session", "schema", "cache", "report", "index", "payload")
_DIRS = ("utils", "core", "api", "lib", "services", "io", "models", "handlers")
_ROOMS = ("server room", "archive", "loading dock", "main lab", "storage unit", "east wing", "vault")
_PROJECTS = ("Apollo", "Borealis", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris")
_FIRST = ("Alice", "Omar", "Priya", "Lukas", "Mei", "Carlos", "Nadia", "Tomas", "Grace", "Kenji")
_LAST = ("Novak", "Okafor", "Lindqvist", "Haddad", "Moreau", "Tanaka", "Reyes", "Fischer", "Osei")
_EVENTS = ("board meeting", "product launch", "site inspection", "contract renewal", "audit", "town hall")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


# (kind, statement, question, draw (key, value)) per kind of fact; `needle_questions` reads the
# statements back and `needle_kind` the questions, trying the kinds in this order (the
# catch-all "What is the {key}?" last).
_NEEDLE_KINDS: tuple[tuple[str, str, str, Callable[[np.random.Generator], tuple[str, str]]], ...] = (
    ("file path", "The function {key} is defined in {value}.", "Where is the function {key} defined?",
     lambda rng: (f"{_pick(rng, _VERBS)}_{_pick(rng, _NOUNS)}", f"{_pick(rng, _DIRS)}/{_pick(rng, _NOUNS)}.py")),
    ("dollar amount", "The {key} total is {value}.", "What is the {key} total?",
     lambda rng: (_pick(rng, _DOCUMENTS), f"{int(rng.integers(10, 100_000)):,} dollars")),
    ("access code", "The access code for the {key} is {value}.", "What is the access code for the {key}?",
     lambda rng: (_pick(rng, _ROOMS), str(int(rng.integers(1000, 1_000_000))))),
    ("person", "The project lead for {key} is {value}.", "Who is the project lead for {key}?",
     lambda rng: (_pick(rng, _PROJECTS), f"{_pick(rng, _FIRST)} {_pick(rng, _LAST)}")),
    ("date", "The {key} is scheduled for {value}.", "When is the {key} scheduled?",
     lambda rng: (_pick(rng, _EVENTS), f"{_pick(rng, _MONTHS)} {int(rng.integers(1, 29))}")),
    ("day count", "The {key} is {value}.", "What is the {key}?",
     lambda rng: (_pick(rng, _TERMS), f"{int(rng.integers(2, 181))} days")),
)
NEEDLE_KINDS = tuple(kind for kind, _, _, _ in _NEEDLE_KINDS)


def _template_pattern(template: str) -> re.Pattern:
    """A template's text with its {key} (shortest) and {value} (rest) as named groups."""
    return re.compile("^" + re.escape(template).replace(r"\{key\}", "(?P<key>.+?)").replace(r"\{value\}", "(?P<value>.+)") + "$")


_STATEMENT_PATTERNS = [_template_pattern(statement) for _, statement, _, _ in _NEEDLE_KINDS]
_QUESTION_PATTERNS = [_template_pattern(question) for _, _, question, _ in _NEEDLE_KINDS]


def _needle_fact(rng: np.random.Generator) -> tuple[str, str, str]:
    """(statement, question, answer) from a random template with random key and value."""
    _, statement, question, draw = _NEEDLE_KINDS[int(rng.integers(len(_NEEDLE_KINDS)))]
    key, value = draw(rng)
    return statement.format(key=key, value=value), question.format(key=key), value


def needle_questions(facts: Sequence[str]) -> list[tuple[str, str]]:
    """The question each needle statement answers, with its answer, in order; other
    statements are ignored. Lets a needle sample supervise every fact it states, not one."""
    found = []
    for fact in facts:
        for pattern, (_, _, question, _) in zip(_STATEMENT_PATTERNS, _NEEDLE_KINDS):
            match = pattern.match(fact)
            if match:
                found.append((question.format(key=match["key"]), match["value"]))
                break
    return found


def needle_kind(question: str) -> str | None:
    """Which kind of document fact (`NEEDLE_KINDS`) a needle question asks for, or None: lets
    an evaluation say which kinds the reader keeps (digit strings are the hard ones)."""
    for pattern, (kind, _, _, _) in zip(_QUESTION_PATTERNS, _NEEDLE_KINDS):
        if pattern.match(question):
            return kind
    return None


def generate_needle(rng: np.random.Generator, num_distractors: int = 0) -> BabiSample:
    """One document-style fact to look up, among `num_distractors` facts about other keys."""
    statement, question, answer = _needle_fact(rng)
    facts, questions = [statement], {question}
    while len(facts) <= num_distractors:
        other, other_question, _ = _needle_fact(rng)
        if other_question not in questions and answer not in other:  # never a second answer
            facts.append(other)
            questions.add(other_question)
    order = [int(i) for i in rng.permutation(len(facts))]
    return BabiSample([facts[i] for i in order], question, answer, [order.index(0)], "needle")
