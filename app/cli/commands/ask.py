"""`rmtqa ask NAME "QUESTION" [--as-of DOC] [--json]`: answer from a corpus's memory.

Without `--json` the answer streams to stdout as it is generated, followed by its sources
(file, page, lines, score, excerpt). With `--json`, stdout is one line:
`{"answer", "sources": [{"path", "page", "lines", "excerpt", "score", ...}], "seconds", "mode", ...}`.
`--mode reread` re-reads the places the memory points at with the question (model/reread.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ask", help="answer a question from a corpus, with sources",
                                   description="Answer a question from a corpus's memory, with the places it came from.")
    parser.add_argument("corpus", metavar="NAME", help="corpus to ask (see `rmtqa corpora`)")
    parser.add_argument("question", metavar="QUESTION")
    parser.add_argument("--as-of", metavar="DOC", help="answer from an earlier memory: a document path (or file name, PATH#page=N) or segment:N")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    parser.add_argument("--model", type=Path, help="model directory (default: the one the corpus was read with)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="longest answer in tokens (default 48)")
    parser.add_argument("--no-sources", action="store_true", help="skip finding sources (faster)")
    parser.add_argument("--mode", choices=["fast", "reread"],
                        help="fast: from the memory alone; reread: then re-read the places it points at with the question (exact values); "
                             "default: reread when that is estimated to answer within 5 s, else fast (the output says which)")
    parser.add_argument("--max-question-tokens", type=int, default=None, metavar="N", help="longest question in tokens (default 256)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.cli.threads import configure_threads
    from app.service.corpus_service import DEFAULT_MAX_QUESTION_TOKENS, CorpusService

    configure_threads()
    service = CorpusService(model_dir=args.model, max_question_tokens=args.max_question_tokens or DEFAULT_MAX_QUESTION_TOKENS)
    options = dict(as_of=args.as_of, max_new_tokens=args.max_new_tokens, sources=not args.no_sources, mode=args.mode)
    if args.json:
        print(json.dumps(service.ask(args.corpus, args.question, **options), ensure_ascii=False))
        return 0
    result = None
    started = False
    for event in service.ask_stream(args.corpus, args.question, **options):
        if event["type"] == "token":
            text = event["text"].lstrip() if not started else event["text"]
            started = started or bool(text)
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            result = event
    assert result is not None
    print()
    if not result["answer"]:
        print("(no answer)")
    if result["as_of"]:
        print(f"  as of {result['as_of']}")
    if result["mode"] == "reread":
        fast = result["fast_answer"]
        print(f"  mode reread ({result.get('mode_reason') or 'asked for'}); from the memory alone: {fast or '(nothing)'}")
    elif result.get("mode_reason"):
        print(f"  mode {result['mode_reason']}")
    if not result["complete"]:
        print(f"  note: the corpus is not fully read yet; answered after segment {result['segment']:,} of {result['segments']:,}")
    if result["sources"]:
        print("  sources (score: how much more likely the answer became once the reader had read the place):")
    for source in result["sources"]:
        page = f" page {source['page']}" if source["page"] is not None else ""
        if source.get("reread"):
            page += " [re-read: the answer was copied from here]"
        page += " (OCR)" if source.get("ocr") else ""
        first, last = source["lines"]
        lines = f"line {first}" if first == last else f"lines {first}-{last}"
        lines += f" ({source['section']})" if source.get("section") else ""
        excerpt = source["excerpt"].replace("\n", "\n      ")  # code keeps its lines, indented under the source
        print(f"  {source['path']}{page} {lines} (score {source['score']:+.2f}): {excerpt}")
    print(f"  ({result['seconds']:.2f} s)", file=sys.stderr)
    return 0
