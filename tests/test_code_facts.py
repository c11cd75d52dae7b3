"""Code facts: questions read with `ast` from a small repository written here (each kind's
answer and evidence checked), unparseable files skipped, seeds reproducible; the repository
as one context in ingest's order; `rmtqa eval --task code` end to end on the shipped model;
and the fixed train / held-out split of this machine's Python packages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli.main import main
from ingest.pipeline import ingest_paths
from model.code_facts import KINDS, CodeFact, code_fact_kind, sample_code_facts, scan_code_facts
from model.code_samples import repository_questions
from model.code_sources import SourceRoot, is_held_out, python_source_roots, split_source_roots
from model.evaluate import shared_contexts
from model.tokenizer import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets" / "default"

FILES = {
    "pkg/__init__.py": "",
    "pkg/shapes.py": '''\
"""Shapes."""
import math
from collections import OrderedDict


class Circle:
    def __init__(self, radius=1.0):
        self.radius = radius

    def area(self, precision=2):
        return round(math.pi * self.radius ** 2, precision)

    def _hidden(self):
        return OrderedDict()


def make_circle(radius, *, label="unit", **extra):
    return Circle(radius)
''',
    "pkg/storage.py": '''\
import json
from pkg.shapes import make_circle


def load_shapes(path,
                encoding="utf-8"):
    with open(path, encoding=encoding) as handle:
        return [make_circle(r) for r in json.load(handle)]


def render(shape):
    return str(shape)
''',
    "tools/render.py": '''\
import math


def render(value, width=80):
    return str(value).center(width)
''',
    "broken.py": "def oops(:\n    pass\n",
}


def write_repo(root: Path) -> Path:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_repo(tmp_path / "repo")


def facts_by_question(root: Path) -> dict[str, CodeFact]:
    return {fact.question: fact for fact in scan_code_facts(root).facts}


def test_each_kind_of_question_is_answered_from_the_code(repo: Path) -> None:
    facts = facts_by_question(repo)
    expected = {
        "In which file is the function make_circle defined?": ("pkg/shapes.py", "pkg/shapes.py", 17, "defined_in"),
        "In which file is the class Circle defined?": ("pkg/shapes.py", "pkg/shapes.py", 6, "defined_in"),
        "In which file is the function load_shapes defined?": ("pkg/storage.py", "pkg/storage.py", 5, "defined_in"),
        "Which class defines the method area?": ("Circle", "pkg/shapes.py", 10, "method_of"),
        "What are the parameters of make_circle?": ("radius, label, **extra", "pkg/shapes.py", 17, "parameters"),
        "What are the parameters of area?": ("precision", "pkg/shapes.py", 10, "parameters"),
        "What are the parameters of load_shapes?": ("path, encoding", "pkg/storage.py", 5, "parameters"),
        "What is the default value of the parameter label of make_circle?": ('"unit"', "pkg/shapes.py", 17, "default"),
        "What is the default value of the parameter precision of area?": ("2", "pkg/shapes.py", 10, "default"),
        "What is the default value of the parameter encoding of load_shapes?": ('"utf-8"', "pkg/storage.py", 6, "default"),
        "Which file imports the module json?": ("pkg/storage.py", "pkg/storage.py", 1, "imported_by"),
        "Which file imports the module collections?": ("pkg/shapes.py", "pkg/shapes.py", 3, "imported_by"),
        "Which file imports the module pkg.shapes?": ("pkg/storage.py", "pkg/storage.py", 2, "imported_by"),
    }
    assert {q: (f.answer, f.path, f.line, f.kind) for q, f in facts.items()} == expected
    for question, fact in facts.items():
        evidence = (repo / fact.path).read_text().splitlines()[fact.line - 1]
        subject = question.split(" of ")[1].split()[-1] if fact.kind == "default" else question.removesuffix(" defined?").rstrip("?").split()[-1]
        assert subject in evidence  # the line names what the question asks about ...
        if fact.kind == "default":
            assert f"{subject}={fact.answer}" in evidence  # ... and states the default as written
        assert code_fact_kind(question) == fact.kind
    assert code_fact_kind("Where is Mary?") is None


def test_ambiguous_private_and_dunder_names_are_never_asked(repo: Path) -> None:
    questions = " ".join(facts_by_question(repo))
    assert "render" not in questions  # defined in two files
    assert "width" not in questions  # a parameter of an ambiguous function
    assert "math" not in questions  # imported by two files
    assert "_hidden" not in questions and "__init__" not in questions and "radius of" not in questions


def test_a_file_that_does_not_parse_is_skipped_with_its_reason(repo: Path) -> None:
    scan = scan_code_facts(repo)
    assert [item.path for item in scan.skipped] == ["broken.py"]
    assert scan.skipped[0].reason.startswith("cannot parse: SyntaxError") and "line 1" in scan.skipped[0].reason
    assert "oops" not in " ".join(f.question for f in scan.facts)
    assert sorted(scan.parsed) == ["pkg/__init__.py", "pkg/shapes.py", "pkg/storage.py", "tools/render.py"]


def test_the_same_seed_gives_the_same_questions_and_every_kind_is_sampled(repo: Path) -> None:
    facts = scan_code_facts(repo).facts
    first = sample_code_facts(facts, 8, seed=3)
    assert first == sample_code_facts(list(reversed(facts)), 8, seed=3)  # not the input order
    assert {f.kind for f in first[: len(KINDS)]} == set(KINDS)  # kinds in turn
    assert [f.question for f in sample_code_facts(facts, 8, seed=4)] != [f.question for f in first]
    assert len(sample_code_facts(facts, 100, seed=0)) == len(facts)


def test_questions_are_asked_over_the_stream_ingest_reads(repo: Path) -> None:
    tokenizer = load_tokenizer(ASSETS)
    questions = repository_questions(repo, tokenizer, n=50, seed=0)
    _, stream = ingest_paths([(repo, ".")], tokenizer)
    assert questions.samples and questions.tokens == stream.total
    assert all(s.context_ids is questions.samples[0].context_ids for s in questions.samples)  # one shared context
    assert questions.samples[0].context_ids == stream.tokens.tolist()
    text = tokenizer.decode(questions.samples[0].context_ids)
    assert "# File: pkg/shapes.py\n" in text  # paths from the root, as the answers name them
    by_question = {s.question: s for s in questions.samples}
    sample = by_question["What is the default value of the parameter encoding of load_shapes?"]
    start, end = sample.fact_positions[0], sample.fact_ends[0]
    assert tokenizer.decode(sample.context_ids[start:end]) == '                encoding="utf-8"):\n'  # the whole line
    assert sample.depth == start / len(sample.context_ids) and sample.task == "code"
    assert questions.unparsed[0].path == "broken.py"


def test_a_token_cap_keeps_only_questions_whose_evidence_it_holds(repo: Path) -> None:
    tokenizer = load_tokenizer(ASSETS)
    whole = repository_questions(repo, tokenizer, n=50, seed=0)
    cap = whole.tokens // 2
    cut = repository_questions(repo, tokenizer, n=50, seed=0, max_tokens=cap)
    assert cut.context_tokens == cap < cut.tokens and cut.to_dict()["truncated"]
    assert 0 < len(cut.samples) < len(whole.samples)
    assert all(len(s.context_ids) == cap and s.fact_positions[0] < cap for s in cut.samples)


def test_questions_sharing_one_context_have_it_read_once() -> None:
    repository, other = [1, 2, 3], [4, 5]
    assert shared_contexts([repository, repository, other, repository]) == ([repository, other], [0, 0, 1, 0])
    assert shared_contexts([[1], [1]]) == ([[1], [1]], [0, 1])  # equal lists of different samples are read each


@pytest.mark.skipif(not (ASSETS / "model.safetensors").is_file(), reason="the shipped model is not there")
def test_eval_task_code_runs_end_to_end_on_the_shipped_model(repo: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["eval", "--task", "code", "--repo", str(repo), "--samples", "5", "--threads", "1", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 1
    report = json.loads(out[0])
    assert report["task"] == "code" and report["mode"] == "fast" and report["python_files_unparsed"][0]["path"] == "broken.py"
    (result,) = report["results"]
    assert result["n"] == 5 and 0 <= result["accuracy"] <= 1 and result["length"] == report["tokens"]
    assert {cell["kind"] for cell in result["by_kind"]} == set(KINDS)
    assert set(report["baselines"]) == {"last_segment", "bm25"}
    assert all(rows[0]["n"] == 5 and 0 <= rows[0]["accuracy"] <= 1 for rows in report["baselines"].values())


def test_eval_task_code_refuses_a_missing_repo_and_noise(repo: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--task", "code", "--samples", "5"]) != 0
    assert "--repo DIR" in capsys.readouterr().err
    assert main(["eval", "--task", "code", "--repo", str(repo), "--noise", str(repo)]) != 0
    assert "leave out --noise" in capsys.readouterr().err


def test_source_roots_are_packages_and_modules_split_by_a_fixed_rule(tmp_path: Path) -> None:
    write_repo(tmp_path)
    (tmp_path / "single.py").write_text("x = 1\n")
    (tmp_path / "not-a-name.py").write_text("x = 1\n")
    (tmp_path / "tools" / "notes.txt").write_text("no __init__: not a package\n")
    (tmp_path / "pkg-1.0.dist-info").mkdir()
    roots = python_source_roots([("purelib", tmp_path), ("stdlib", tmp_path / "missing")])
    assert roots == [SourceRoot("broken", tmp_path / "broken.py", "purelib"), SourceRoot("pkg", tmp_path / "pkg", "purelib"),
                     SourceRoot("single", tmp_path / "single.py", "purelib")]
    names = [f"package{i}" for i in range(1000)]
    held_out = [name for name in names if is_held_out(name)]
    assert 50 < len(held_out) < 150  # about HELD_OUT_PERCENT
    assert [is_held_out(name) for name in ("json", "logging", "sqlite3", "os", "torch", "rank_bm25")] == [True, True, True, False, False, False]
    here = python_source_roots()
    train, validation = split_source_roots(here)
    assert {r.name for r in train}.isdisjoint(r.name for r in validation) and len(train) + len(validation) == len(here)
    assert "json" in {r.name for r in validation} and "os" in {r.name for r in train}
