"""bAbI parsing and generation, and BABILong sample construction.

Generated answers are checked against an independent replay of the statements (written
from the official files' wording, and itself checked against the official answers).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from model.babi import (
    ACTORS,
    NEEDLE_KINDS,
    PLACES,
    QA5_ACTORS,
    TASKS,
    BabiSample,
    babi_files,
    generate_babi,
    generate_needle,
    needle_kind,
    needle_questions,
    parse_babi,
    split_babi,
)
from model.tasks import (
    ANSWER_TEMPLATE,
    QUESTION_TEMPLATE,
    NoiseSource,
    TaskGenerator,
    make_sample,
    parse_length,
    read_text,
    split_sentences,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BABI_DIR, BOOKS_DIR = DATA / "babi", DATA / "books"
needs_babi = pytest.mark.skipif(not babi_files(BABI_DIR), reason="shared bAbI files absent")
needs_books = pytest.mark.skipif(not list(BOOKS_DIR.glob("*.txt")), reason="shared books absent")


class ByteTokenizer:
    """UTF-8 bytes, eos 256: deterministic and concatenates exactly like the text."""

    eos_id = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


TOK = ByteTokenizer()


# --- an independent solver ----------------------------------------------------------------

MOVE = re.compile(r"(\w+) (?:moved|went|journeyed|travelled|went back) to the (\w+)\.")
TAKE = re.compile(r"(\w+) (?:picked up|got|grabbed|took) the (\w+)(?: there)?\.")
DROP = re.compile(r"(\w+) (?:dropped|left|discarded|put down) the (\w+)(?: there)?\.")
GIVE = re.compile(r"(\w+) (?:gave|handed|passed) the (\w+) to (\w+)\.")
RELATION = re.compile(r"The (\w+) is (north|south|east|west) of the (\w+)\.")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}


def solve(facts: list[str], question: str) -> str:
    """Answer a qa1-qa5 question by replaying the statements; qa5 asks about the latest match."""
    place, holder, history, gives, relation = {}, {}, {}, [], {}

    def seen(obj, where):  # the object's known places, in order
        h = history.setdefault(obj, [])
        if where is not None and (not h or h[-1] != where):
            h.append(where)

    for fact in facts:
        if m := MOVE.fullmatch(fact):
            actor, place[actor] = m.group(1), m.group(2)
            for obj in [o for o, h in holder.items() if h == actor]:
                seen(obj, place[actor])
        elif m := TAKE.fullmatch(fact):
            holder[m.group(2)] = m.group(1)
            seen(m.group(2), place.get(m.group(1)))
        elif m := DROP.fullmatch(fact):
            holder[m.group(2)] = None
            seen(m.group(2), place.get(m.group(1)))
        elif m := GIVE.fullmatch(fact):
            holder[m.group(2)] = m.group(3)
            gives.append(m.groups())
        elif m := RELATION.fullmatch(fact):
            a, d, b = m.groups()
            relation[d, b], relation[OPPOSITE[d], a] = a, b
        else:
            raise ValueError(f"unexpected statement {fact!r}")
    if m := re.fullmatch(r"Where is (\w+)\?", question):
        return place[m.group(1)]
    if m := re.fullmatch(r"Where is the (\w+)\?", question):
        return history[m.group(1)][-1]
    if m := re.fullmatch(r"Where was the (\w+) before the (\w+)\?", question):
        h = history[m.group(1)]
        return h[len(h) - 2 - h[::-1].index(m.group(2))]
    if m := re.fullmatch(r"What is (\w+) of the (\w+)\?", question):
        return relation[m.groups()]
    if m := re.fullmatch(r"What is the (\w+) (\w+) of\?", question):
        return relation[OPPOSITE[m.group(2)], m.group(1)]
    forms = [  # question pattern, which (giver, object, receiver) parts it names, which it asks
        (r"What did (\w+) give to (\w+)\?", (0, 2), 1),
        (r"Who gave the (\w+) to (\w+)\?", (1, 2), 0),
        (r"Who did (\w+) give the (\w+) to\?", (0, 1), 2),
        (r"Who gave the (\w+)\?", (1,), 0),
        (r"Who received the (\w+)\?", (1,), 2),
    ]
    for pattern, named, asked in forms:
        if m := re.fullmatch(pattern, question):
            matching = [g for g in gives if tuple(g[i] for i in named) == m.groups()]
            return matching[-1][asked]
    raise ValueError(f"unexpected question {question!r}")


# --- official files -----------------------------------------------------------------------

MINI_BABI = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Where is Daniel? \thallway\t4
1 Sandra travelled to the office.
2 Sandra went to the bathroom.
3 Where is Sandra? \tbathroom\t2
"""


def test_parse_babi_format(tmp_path):
    path = tmp_path / "qa1_single-supporting-fact_train.txt"
    path.write_text(MINI_BABI)
    samples = parse_babi(path)
    assert [s.task for s in samples] == ["qa1"] * 3
    assert samples[0] == BabiSample(
        ["Mary moved to the bathroom.", "John went to the hallway."], "Where is Mary?", "bathroom", [0], "qa1"
    )
    # questions are not facts: fact 4 of the story is the third statement
    assert samples[1].facts[-1] == "Daniel went back to the hallway." and samples[1].supporting == [2]
    assert samples[2].facts == ["Sandra travelled to the office.", "Sandra went to the bathroom."]
    assert [s.story for s in samples] == [0, 0, 1]
    assert parse_babi(path, task="qa9")[0].task == "qa9"
    (tmp_path / "story.txt").write_text(MINI_BABI)
    with pytest.raises(ValueError):  # no task in the name
        parse_babi(tmp_path / "story.txt")


@needs_babi
def test_official_files_parse_and_replay():
    files = babi_files(BABI_DIR)
    assert set(files) == set(TASKS)
    for task, path in files.items():
        samples = parse_babi(path)
        assert len(samples) >= 1000 and all(s.task == task for s in samples)
        agree = 0
        for s in samples:
            assert s.supporting == sorted(s.supporting) and 0 <= s.supporting[0] <= s.supporting[-1] < len(s.facts)
            assert not any("?" in f for f in s.facts)
            agree += solve(s.facts, s.question) == s.answer
        # qa5's files ask a few ambiguous questions (the same pair handed over twice)
        assert agree / len(samples) >= (0.99 if task == "qa5" else 1.0), task


@needs_babi
def test_split_babi_holds_out_whole_stories():
    samples = parse_babi(babi_files(BABI_DIR)["qa2"])
    train, val = split_babi(samples, 0.1, seed=3)
    assert len(train) + len(val) == len(samples)
    train_stories, val_stories = {s.story for s in train}, {s.story for s in val}
    assert not train_stories & val_stories
    assert len(val_stories) == round(0.1 * len(train_stories | val_stories))
    assert split_babi(samples, 0.1, seed=3) == (train, val)
    assert split_babi(samples, 0.1, seed=4)[1] != val


# --- generated stories --------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_generated_answers_match_replay(task):
    rng = np.random.default_rng(7)
    cast = QA5_ACTORS if task == "qa5" else ACTORS
    for _ in range(300):
        s = generate_babi(task, rng)
        assert s.task == task
        assert solve(s.facts, s.question) == s.answer, s
        assert s.supporting == sorted(set(s.supporting)) and s.supporting[-1] < len(s.facts)
        if task in ("qa1", "qa2", "qa4", "qa5"):  # these supporting facts alone give the answer
            assert solve([s.facts[i] for i in s.supporting], s.question) == s.answer, s
        words = {w for f in s.facts for w in re.findall(r"[A-Z]\w+", f)} - {"The"}
        assert words <= set(cast) | {"The"}
        assert s.answer in PLACES + ("football", "apple", "milk") + cast


def test_generated_qa3_supporting_facts_are_the_moves():
    rng = np.random.default_rng(1)
    for _ in range(200):
        s = generate_babi("qa3", rng)
        obj, place = re.fullmatch(r"Where was the (\w+) before the (\w+)\?", s.question).groups()
        support = [s.facts[i] for i in s.supporting]
        assert any(f.endswith(f"to the {s.answer}.") for f in support)
        assert any(f.endswith(f"to the {place}.") for f in support)
        assert any(f" the {obj}" in f for f in support)


def test_generation_is_deterministic_and_sized():
    for task in TASKS:
        a = [generate_babi(task, np.random.default_rng(5)) for _ in range(3)]
        b = [generate_babi(task, np.random.default_rng(5)) for _ in range(3)]
        assert a == b
    for n in (3, 12, 40):
        assert len(generate_babi("qa2", np.random.default_rng(0), num_facts=n).facts) == n
    assert len(generate_babi("qa4", np.random.default_rng(0), num_facts=4).facts) == 4
    with pytest.raises(ValueError):
        generate_babi("qa6", np.random.default_rng(0))


NEEDLE_QUESTIONS = [
    r"What is the .* (period|term|window|deadline|cycle)\?",
    r"Where is the function \w+ defined\?",
    r"What is the .* total\?",
    r"What is the access code for the .*\?",
    r"Who is the project lead for \w+\?",
    r"When is the .* scheduled\?",
]


def test_needles_answer_from_one_fact():
    rng = np.random.default_rng(2)
    templates = set()
    for _ in range(200):
        s = generate_needle(rng, num_distractors=2)
        assert s.task == "needle" and len(s.facts) == 3 and len(s.supporting) == 1
        assert s.answer in s.facts[s.supporting[0]]
        assert all(s.answer not in f for i, f in enumerate(s.facts) if i not in s.supporting)
        templates |= {n for n, shape in enumerate(NEEDLE_QUESTIONS) if re.fullmatch(shape, s.question)}
    assert templates == set(range(len(NEEDLE_QUESTIONS)))  # several templates, all in use
    assert len({generate_needle(rng).answer for _ in range(100)}) > 50  # not memorisable


def test_needle_questions_read_every_statement_back():
    rng = np.random.default_rng(5)
    for _ in range(100):
        s = generate_needle(rng, num_distractors=2)
        asked = needle_questions(["Mary went to the kitchen.", *s.facts])  # non-needle statements are skipped
        assert len(asked) == 3 and (s.question, s.answer) == asked[s.supporting[0]]
        assert all(answer in fact for (_, answer), fact in zip(asked, s.facts))


def test_needle_kind_names_the_kind_of_every_question():
    rng = np.random.default_rng(9)
    seen = set()
    for _ in range(300):
        s = generate_needle(rng)
        kind = needle_kind(s.question)
        seen.add(kind)
        # the answer has its kind's shape (the catch-all "What is the X?" must not take the others)
        shape = {"file path": r"\w+/\w+\.py", "dollar amount": r"[\d,]+ dollars", "access code": r"\d{4,6}",
                 "person": r"[A-Z]\w+ [A-Z]\w+", "date": r"[A-Z]\w+ \d{1,2}", "day count": r"\d+ days"}[kind]
        assert re.fullmatch(shape, s.answer), (kind, s.answer)
    assert seen == set(NEEDLE_KINDS)
    assert needle_kind("Where is Mary?") is None


# --- noise --------------------------------------------------------------------------------

WORDS = "the a ship storm lantern harbour captain river old quiet walked saw found under over".split()


def synthetic_books(n_books: int = 3, n_sentences: int = 3000, seed: int = 0) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    return {
        f"book{b}": " ".join(
            " ".join(WORDS[i] for i in rng.integers(len(WORDS), size=rng.integers(3, 25))).capitalize() + "."
            for _ in range(n_sentences)
        )
        for b in range(n_books)
    }


def test_split_sentences_strips_gutenberg_and_whitespace():
    text = (
        "Title page\r\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n\r\nIt was  dark.\r\n"
        "\"Who is there?\" she asked!  Nobody answered.\r\n"
        "End of the Project Gutenberg EBook of X\r\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\nlicense"
    )
    assert split_sentences(text) == ["It was dark.", '"Who is there?" she asked!', "Nobody answered."]
    assert split_sentences(" ".join(["word"] * 130) + ".", max_words=60) == [
        " ".join(["word"] * 60), " ".join(["word"] * 60), " ".join(["word"] * 9 + ["word."])
    ]


def test_read_text_decodes_bom_utf8_and_cp1252(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffCaf\u00e9 au lait.".encode("utf-8"))
    (tmp_path / "latin.txt").write_bytes("Caf\u00e9 \u2014 noir.".encode("cp1252"))
    assert read_text(tmp_path / "bom.txt") == "Caf\u00e9 au lait."
    assert read_text(tmp_path / "latin.txt") == "Caf\u00e9 \u2014 noir."
    noise = NoiseSource(tmp_path, exclude=["bom"])
    assert noise.sentences == ["Caf\u00e9 \u2014 noir."]
    assert NoiseSource.from_directory(tmp_path, include=["bom.txt"]).names == ["bom"]
    with pytest.raises(ValueError):  # a misspelt held-out book is an error, not a leak
        NoiseSource(tmp_path, exclude=["bom.md"])


def test_noise_split_and_contiguous_runs():
    books = synthetic_books()
    train, held = NoiseSource(books).split(["book2"])
    assert train.names == ["book0", "book1"] and held.names == ["book2"]
    with pytest.raises(ValueError):
        NoiseSource(books).split(["nope"])
    assert NoiseSource(books, exclude=["book0"]).names == ["book1", "book2"]
    noise = NoiseSource(list(books.values()))
    ids, bounds = noise.sample(2000, TOK, np.random.default_rng(0))
    text = TOK.decode(ids)
    assert len(ids) == 2000  # the last sentence is cut to fit
    joined = " ".join(noise.sentences)
    assert text[1:] in joined + " " + joined  # consecutive sentences, wrapping around the corpus
    assert bounds[0] == 0 and np.all(np.diff(bounds) > 0) and len(ids) - bounds[-1] < 200
    assert all(text[int(i) - 1] == "." and text[int(i)] == " " for i in bounds[1:-1])


# --- BABILong samples ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def noise() -> NoiseSource:
    return NoiseSource(synthetic_books())


def check_sample(sample, babi: BabiSample) -> None:
    """Facts sit in order at their positions, at sentence boundaries; depth matches."""
    context = sample.context_ids
    for fact, pos in zip(babi.facts, sample.fact_positions):
        ids = TOK.encode(" " + fact)
        assert context[pos : pos + len(ids)] == ids
    assert sample.fact_positions == sorted(sample.fact_positions)
    assert sample.depth == sample.fact_positions[max(babi.supporting)] / len(context)
    assert 0 <= sample.depth < 1
    assert sample.question_ids == TOK.encode(QUESTION_TEMPLATE.format(question=babi.question))
    assert sample.answer_ids == TOK.encode(ANSWER_TEMPLATE.format(answer=babi.answer)) + [TOK.eos_id]
    assert (sample.question, sample.answer, sample.task) == (babi.question, babi.answer, babi.task)


@pytest.mark.parametrize("target", [1000, 4000, 32000])
def test_make_sample_lengths_and_fact_order(noise, target):
    rng = np.random.default_rng(target)
    for task in TASKS:
        babi = generate_babi(task, rng)
        sample = make_sample(babi, noise, TOK, target, rng)
        check_sample(sample, babi)
        assert len(sample.context_ids) == target
        text = TOK.decode(sample.context_ids)
        # every fact is a whole sentence of the space-joined text
        assert all(f" {fact} " in text + " " for fact in babi.facts)


def test_facts_only_without_noise_or_target(noise):
    babi = generate_babi("qa2", np.random.default_rng(0), num_facts=6)
    facts_only = TOK.encode("".join(" " + f for f in babi.facts))
    for sample in (
        make_sample(babi, None, TOK, 4000, np.random.default_rng(0)),
        make_sample(babi, noise, TOK, 0, np.random.default_rng(0)),
        make_sample(babi, noise, TOK, 10, np.random.default_rng(0)),  # facts exceed the target
    ):
        assert sample.context_ids == facts_only
        check_sample(sample, babi)


def test_depth_spans_the_context(noise):
    rng = np.random.default_rng(0)
    depths = [make_sample(generate_babi("qa1", rng, 2), noise, TOK, 4000, rng).depth for _ in range(200)]
    assert min(depths) < 0.2 and max(depths) > 0.8


def test_needle_answer_is_in_the_context(noise):
    rng = np.random.default_rng(4)
    for _ in range(20):
        babi = generate_needle(rng, num_distractors=1)
        sample = make_sample(babi, noise, TOK, 2000, rng)
        check_sample(sample, babi)
        assert babi.answer in TOK.decode(sample.context_ids)


def test_task_generator_is_deterministic(noise, tmp_path):
    (tmp_path / "qa1_single-supporting-fact_train.txt").write_text(MINI_BABI)
    make = lambda: TaskGenerator(  # noqa: E731
        TOK, tasks=["qa1", "qa4"], babi_files=babi_files(tmp_path), noise=noise, seed=11, needle_probability=0.3
    )
    a, b = make(), make()
    samples = [a.sample("2k") for _ in range(30)]
    assert samples == [b.sample(2000) for _ in range(30)]
    assert {s.task for s in samples} == {"qa1", "qa4", "needle"}
    assert {s.question for s in samples if s.task == "qa1"} <= {"Where is Mary?", "Where is Daniel?", "Where is Sandra?"}
    assert make().sample(0, task="qa5").task == "qa5"  # a task without a file is generated
    assert a.sample(500, task="needle").task == "needle"
    with pytest.raises(ValueError):
        TaskGenerator(TOK, tasks=["qa7"])


def test_parse_length():
    assert [parse_length(s) for s in ("512", "1k", "4k", "32k", "128k", "1M", "1.5k", 300)] == [
        512, 1000, 4000, 32000, 128000, 1_000_000, 1500, 300
    ]
    with pytest.raises(ValueError):
        parse_length("4 tokens")


@needs_books
def test_books_speed_and_length():
    noise = NoiseSource(BOOKS_DIR)
    assert "moby-dick" in noise.names and not any("GUTENBERG" in s for s in noise.sentences[:50])
    gen = TaskGenerator(TOK, noise=noise, seed=0)
    gen.sample("1M")  # warm the token cache
    start = time.perf_counter()
    for _ in range(10):
        sample = gen.sample("32k")
    assert (time.perf_counter() - start) / 10 < 0.1
    assert len(sample.context_ids) == 32000
    start = time.perf_counter()
    big = gen.sample("1M")
    assert time.perf_counter() - start < 3
    assert len(big.context_ids) == 1_000_000


@needs_babi
def test_train_and_val_generators_split_official_stories():
    files = babi_files(BABI_DIR)
    kw = dict(tasks=["qa1"], babi_files=files, val_fraction=0.1)
    train = TaskGenerator(TOK, split="train", seed=0, **kw)
    val = TaskGenerator(TOK, split="val", seed=1, **kw)
    assert len(train.parsed["qa1"]) + len(val.parsed["qa1"]) == len(parse_babi(files["qa1"]))
    val_stories = {s.story for s in val.parsed["qa1"]}
    assert len(val_stories) == 200 and not {s.story for s in train.parsed["qa1"]} & val_stories
    first = [val.sample(0).context_ids for _ in range(5)]
    val.reseed(1)
    assert [val.sample(0).context_ids for _ in range(5)] == first
