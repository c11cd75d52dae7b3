"""`rmtqa serve [--host 127.0.0.1] [--port 7860] [--share] [--auth-file FILE] [--model DIR]`:
the web UI (`app.webui`).

Binds 127.0.0.1 unless told otherwise; a wider bind or a public share link is opt-in and
printed as a warning. The login comes from `--auth-file` or `$RMTQA_AUTH` (or `--auth`, which
`ps` shows to every user of the machine); wrong logins are slowed down
(`app.webui.auth`). Starts even when no model is shipped yet (it says so, and the Model tab
shows it); existing corpora read with another model can still be asked.
"""
from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from app.cli.arguments import probability
from app.cli.errors import UserError

LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="start the web UI", description="Start the web UI (Gradio) on this machine.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link (reachable from the internet)")
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="require this login (visible in `ps`: prefer --auth-file or the RMTQA_AUTH environment variable)")
    parser.add_argument("--auth-file", metavar="FILE", help="require the login USER:PASSWORD on the first line of FILE")
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help="model directory to read and answer with (default: the shipped assets/default for new corpora, "
                             "and each corpus's own model)")
    parser.add_argument("--max-upload-mb", type=float, default=None, metavar="MB", help="largest upload in MB (default 200)")
    parser.add_argument("--max-upload-tokens", type=int, default=None, metavar="N",
                        help="most tokens one upload may add to a corpus (default 20,000,000; 0: no cap)")
    parser.add_argument("--max-question-tokens", type=int, default=None, metavar="N", help="longest question in tokens (default 256)")
    parser.add_argument("--min-confidence", type=probability, metavar="P",
                        help="answers below this confidence say 'not found' (0-1; default: the reader's calibrated threshold)")
    parser.add_argument("--reading-slots", type=int, default=None, metavar="N", help="corpora read at the same time (default 2)")
    parser.add_argument("--local-paths", action="store_true",
                        help="let users type folders on the server to read even when the UI is reachable from other machines")
    parser.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, share: bool, auth: tuple[str, str] | None, *, auth_in_argv: bool = False) -> list[str]:
    """What to warn about before serving beyond this machine."""
    warnings = []
    if not is_loopback(host):
        warnings.append(f"binding {host}: the UI is reachable from other machines on the network")
    if share:
        warnings.append("--share: the UI gets a public gradio.live link, reachable from the internet")
    if warnings:
        warnings.append("every action of the UI (reading, asking, cancelling, deleting corpora) can be called by any HTTP "
                        "client that reaches it, not only through the page; deleting still needs its confirmation step")
        if auth is None:
            warnings.append("no login (--auth-file FILE or RMTQA_AUTH=USER:PASSWORD): anyone who can reach it can read, ask "
                            "and delete corpora")
    if auth_in_argv:
        warnings.append("--auth puts the password on the command line, where `ps` shows it to every user of this machine; "
                        "use --auth-file FILE or RMTQA_AUTH instead")
    return warnings


def run(args: argparse.Namespace) -> int:
    from app.cli.threads import configure_threads
    from app.webui.auth import AuthError, LoginThrottle, load_credentials

    try:
        auth = load_credentials(args.auth, args.auth_file)
    except AuthError as error:
        raise UserError(str(error)) from None
    if args.model is not None and not args.model.is_dir():
        raise UserError(f"no model directory at {args.model}")
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a port number")
    for warning in exposure_warnings(args.host, args.share, auth, auth_in_argv=args.auth is not None):
        print(f"rmtqa: warning: {warning}", file=sys.stderr)
    local_paths = args.local_paths or (is_loopback(args.host) and not args.share)

    from app.paths import default_model_dir
    from app.service.corpus_service import DEFAULT_MAX_QUESTION_TOKENS, CorpusService
    from app.webui.handlers import DEFAULT_MAX_UPLOAD_MB, DEFAULT_MAX_UPLOAD_TOKENS
    from app.webui.jobs import DEFAULT_SLOTS
    from app.webui.layout import build_app, launch_app
    from app.webui.model_tab import has_weights

    question_cap = _positive(args.max_question_tokens, DEFAULT_MAX_QUESTION_TOKENS, "--max-question-tokens")
    token_cap = DEFAULT_MAX_UPLOAD_TOKENS if args.max_upload_tokens is None else args.max_upload_tokens
    if token_cap < 0:
        raise UserError("--max-upload-tokens must be 0 (no cap) or positive")
    slots = _positive(args.reading_slots, DEFAULT_SLOTS, "--reading-slots")
    configure_threads()
    service = CorpusService(model_dir=args.model, max_question_tokens=question_cap, min_confidence=args.min_confidence)
    model_dir = service.model_dir or default_model_dir()
    if has_weights(model_dir):
        print(f"rmtqa: reading with the model in {model_dir}", file=sys.stderr)
    else:
        print(f"rmtqa: note: no model is shipped yet ({model_dir} has no model.safetensors): the UI starts, "
              "but reading and asking need a model (rmtqa serve --model DIR)", file=sys.stderr)
    limit = args.max_upload_mb if args.max_upload_mb is not None else DEFAULT_MAX_UPLOAD_MB
    if limit <= 0:
        raise UserError("--max-upload-mb must be positive")
    demo = build_app(service, max_upload_mb=limit, max_upload_tokens=token_cap or None, local_paths=local_paths, reading_slots=slots)
    try:
        login = LoginThrottle(*auth) if auth is not None else None
        _, local_url, share_url = launch_app(demo, host=args.host, port=args.port, share=args.share, auth=login,
                                             max_upload_mb=limit, prevent_thread_lock=True, quiet=True)
        shown = local_url.replace("://0.0.0.0:", "://127.0.0.1:") if local_url else f"http://{args.host}:{args.port}/"
        print(f"rmtqa: corpora in {service.home}; the UI is at {shown}" + (f" and {share_url}" if share_url else "")
              + " (Ctrl-C stops it)", file=sys.stderr)
        demo.block_thread()
    finally:
        demo.rmtqa.jobs.stop()  # type: ignore[attr-defined]  # reading stops after its segment, saved
        demo.close()
    return 0


def _positive(value: int | None, default: int, flag: str) -> int:
    if value is None:
        return default
    if value <= 0:
        raise UserError(f"{flag} must be positive")
    return value
