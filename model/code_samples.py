"""A repository as one long context, with its code facts as questions over it.

The context is the token stream `rmtqa ingest` makes of the folder (`ingest.pipeline`: the
same files, order, headers and tokenization), with paths named from the folder's root, as
`rmtqa ingest .` run inside it names them, so a `defined_in` answer is the path its file's
header shows. Long repositories are cut at `max_tokens`; only facts whose evidence line lies
before the cut are asked (the answers stay right for the whole tree: names are checked for
uniqueness in every file).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from ingest.headings import WindowHeadings, record_spans
from ingest.pipeline import ingest_paths
from ingest.records import DocumentRecord
from ingest.report import Skipped
from model.code_facts import CodeFact, scan_code_facts, sample_code_facts
from model.tasks import ANSWER_TEMPLATE, QUESTION_TEMPLATE, TaskSample
from model.tokenizer import Tokenizer

DEFAULT_MAX_TOKENS = 1_000_000


@dataclass
class RepositoryQuestions:
    """Questions over one repository and what the JSON report says about how they were made."""

    samples: list[TaskSample]
    tokens: int  # the repository's whole token stream
    context_tokens: int  # what the questions are asked over (the stream, cut at max_tokens)
    files_read: int
    parsed: int  # .py files the facts were read from
    unparsed: list[Skipped]  # .py files that did not parse
    available: dict[str, int]  # askable facts per kind whose evidence is in the context
    headings: WindowHeadings | None = None  # what heads a window of the context (its file, enclosing definitions)

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens, "context_tokens": self.context_tokens, "truncated": self.context_tokens < self.tokens,
            "files_read": self.files_read, "python_files_parsed": self.parsed,
            "python_files_unparsed": [item.to_dict() for item in self.unparsed], "facts_available": self.available,
        }


def repository_questions(root: str | Path, tokenizer: Tokenizer, n: int, seed: int = 0, max_tokens: int = DEFAULT_MAX_TOKENS) -> RepositoryQuestions:
    """`n` code-fact questions (fewer when the tree has fewer) over `root` read as one context
    of at most `max_tokens` tokens; every sample shares that one list of ids."""
    report, stream = ingest_paths([(Path(root), ".")], tokenizer)
    context = stream.tokens[:max_tokens].tolist() if stream.tokens is not None else []
    scan = scan_code_facts(root)
    records = records_by_path(stream.records)
    places = {fact: place for fact in scan.facts if (place := evidence_tokens(records, fact)) and place[0] < len(context)}
    chosen = sample_code_facts(list(places), n, seed)
    return RepositoryQuestions(
        samples=[_sample(fact, places[fact], context, tokenizer) for fact in chosen], tokens=stream.total,
        context_tokens=len(context), files_read=len(report.documents), parsed=len(scan.parsed), unparsed=scan.skipped,
        available=dict(sorted(Counter(fact.kind for fact in places).items())),
        headings=WindowHeadings(context, record_spans(stream.records), tokenizer.decode, tokenizer.encode("\n")),
    )


def evidence_tokens(records: dict[str, list[DocumentRecord]], fact: CodeFact) -> tuple[int, int] | None:
    """[start, end) of the evidence line's tokens in the stream; None when the stream has no
    such line (the file was skipped by ingest, e.g. as a duplicate or too large)."""
    for record in records.get(fact.path, ()):
        if record.line_start <= fact.line <= record.line_end and record.line_tokens is not None:
            offset = record.token_start + record.header_tokens
            index = fact.line - record.line_start
            return offset + record.line_tokens[index], offset + record.line_tokens[index + 1]
    return None


def records_by_path(records: list[DocumentRecord]) -> dict[str, list[DocumentRecord]]:
    index: dict[str, list[DocumentRecord]] = defaultdict(list)
    for record in records:
        index[record.path].append(record)
    return index


def _sample(fact: CodeFact, place: tuple[int, int], context: list[int], tokenizer: Tokenizer) -> TaskSample:
    start, end = place
    return TaskSample(
        context_ids=context,
        question_ids=tokenizer.encode(QUESTION_TEMPLATE.format(question=fact.question)),
        answer_ids=tokenizer.encode(ANSWER_TEMPLATE.format(answer=fact.answer)) + [tokenizer.eos_id],
        answer=fact.answer, question=fact.question, task="code",
        fact_positions=[start], depth=start / len(context), facts=[tokenizer.decode(context[start:end])],
        fact_ends=[min(end, len(context))], supporting=[0],
    )
