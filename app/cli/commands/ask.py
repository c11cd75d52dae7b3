"""`rmtqa ask NAME "QUESTION" [--as-of DOC] [--json]`: answer from a corpus's memory.

Without `--json` the answer, its confidence and its sources (file, page, lines, score,
excerpt). With `--json`, stdout is one line: `{"answer", "sources": [{"path", "page", "lines",
"excerpt", "score", ...}], "seconds", "mode", "confidence", "abstained", ...}`. `--mode reread`
re-reads the places the memory points at with the question (model/reread.py); below the
reader's calibrated confidence (or `--min-confidence`) the answer is "not found" and the
sources are the closest places (`--show-guess` prints the guess too).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli.arguments import probability


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
    parser.add_argument("--mode", choices=["fast", "reread", "deep"],
                        help="fast: from the memory alone; reread: then re-read the places it points at with the question (exact values); "
                             "deep: read the whole corpus again with the question, keeping a running answer (whole-corpus questions); "
                             "default: reread when that is estimated to answer within 5 s, else fast (the output says which)")
    parser.add_argument("--min-confidence", type=probability, metavar="P", help="say 'not found' below this confidence (0-1; default: the reader's calibrated threshold)")
    parser.add_argument("--show-guess", action="store_true", help="when the answer is not confident enough, also print the best guess (marked as such)")
    parser.add_argument("--max-question-tokens", type=int, default=None, metavar="N", help="longest question in tokens (default 256)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.cli.threads import configure_threads
    from app.service.corpus_service import DEFAULT_MAX_QUESTION_TOKENS, CorpusService
    from model.confidence import describe

    configure_threads()
    service = CorpusService(model_dir=args.model, max_question_tokens=args.max_question_tokens or DEFAULT_MAX_QUESTION_TOKENS,
                            min_confidence=args.min_confidence)
    options = dict(as_of=args.as_of, max_new_tokens=args.max_new_tokens, sources=not args.no_sources, mode=args.mode)
    if args.json:
        print(json.dumps(service.ask(args.corpus, args.question, **options), ensure_ascii=False))
        return 0
    # Printed whole, not streamed: whether the answer stands is known only once it is judged.
    result = service.ask(args.corpus, args.question, **options)
    print(result["answer"] or "(no answer)")
    if result.get("abstained") and args.show_guess:
        print(f"  best guess (not confident, check the places below): {result['best_guess'] or '(nothing)'}")
    if result.get("confidence") is not None:
        print(f"  confidence {result['confidence']:.2f}: {describe(result['confidence'])}"
              + (" (not found: the closest places are below)" if result.get("abstained") else ""))
    if result.get("trained_type") is False:
        print("  note: this is not a kind of question the reader was trained on; its answer is a guess in the shape of one it knows")
    if result["as_of"]:
        print(f"  as of {result['as_of']}")
    if result["mode"] in ("reread", "deep"):
        fast = result["fast_answer"]
        print(f"  mode {result['mode']} ({result.get('mode_reason') or 'asked for'}); from the memory alone: {fast or '(nothing)'}")
    if result["mode"] == "deep":
        deep = result["deep"]
        print(f"  deep read: {deep['windows_read']:,} of {deep['windows']:,} windows named {deep['key'] or '(no word of the question)'}")
    elif result.get("mode_reason"):
        print(f"  mode {result['mode_reason']}")
    if not result["complete"]:
        print(f"  note: the corpus is not fully read yet; answered after segment {result['segment']:,} of {result['segments']:,}")
    if result["sources"]:
        print("  closest places (score" if result.get("abstained") else "  sources (score: how much more likely the answer became once the reader had read the place):")
    for source in result["sources"]:
        page = f" page {source['page']}" if source["page"] is not None else ""
        if source.get("reread") or source.get("deep"):
            page += " [re-read: the answer was copied from here]"
        page += " (OCR)" if source.get("ocr") else ""
        first, last = source["lines"]
        lines = f"line {first}" if first == last else f"lines {first}-{last}"
        lines += f" ({source['section']})" if source.get("section") else ""
        excerpt = source["excerpt"].replace("\n", "\n      ")  # code keeps its lines, indented under the source
        score = f"answer likelihood {source['score']:.2f}" if source.get("reread") or source.get("deep") else f"score {source['score']:+.2f}"
        print(f"  {source['path']}{page} {lines} ({score}): {excerpt}")
    print(f"  ({result['seconds']:.2f} s)", file=sys.stderr)
    return 0
