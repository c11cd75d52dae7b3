"""`rmtqa serve [--host 127.0.0.1] [--port 7860] [--share] [--auth USER:PASSWORD] [--model DIR]`:
the web UI (`app.webui`).

Binds 127.0.0.1 unless told otherwise; a wider bind or a public share link is opt-in and
printed as a warning. Starts even when no model is shipped yet (it says so, and the Model
tab shows it); existing corpora read with another model can still be asked.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from app.cli import UserError

LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="start the web UI", description="Start the web UI (Gradio) on this machine.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link (reachable from the internet)")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="require this login (recommended with --host or --share)")
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help="model directory to read and answer with (default: the shipped assets/default for new corpora, "
                             "and each corpus's own model)")
    parser.add_argument("--max-upload-mb", type=float, default=None, metavar="MB", help="largest upload in MB (default 200)")
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


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise UserError("--auth takes USER:PASSWORD (both non-empty)")
    return user, password


def exposure_warnings(host: str, share: bool, auth: tuple[str, str] | None) -> list[str]:
    """What to warn about before serving beyond this machine."""
    warnings = []
    if not is_loopback(host):
        warnings.append(f"binding {host}: the UI is reachable from other machines on the network")
    if share:
        warnings.append("--share: the UI gets a public gradio.live link, reachable from the internet")
    if warnings and auth is None:
        warnings.append("no --auth: anyone who can reach it can read, ask and delete corpora")
    return warnings


def run(args: argparse.Namespace) -> int:
    from app.corpus_service import configure_threads

    auth = parse_auth(args.auth)
    if args.model is not None and not args.model.is_dir():
        raise UserError(f"no model directory at {args.model}")
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a port number")
    for warning in exposure_warnings(args.host, args.share, auth):
        print(f"rmtqa: warning: {warning}", file=sys.stderr)
    local_paths = args.local_paths or (is_loopback(args.host) and not args.share)

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app.paths import default_model_dir
    from app.service import CorpusService
    from app.webui import DEFAULT_MAX_UPLOAD_MB, build_app, launch_app
    from app.webui_model import display_dir, has_weights

    configure_threads()
    service = CorpusService(model_dir=args.model)
    model_dir = service.model_dir or default_model_dir()
    if has_weights(model_dir):
        print(f"rmtqa: reading with the model in {display_dir(model_dir)}", file=sys.stderr)
    else:
        print(f"rmtqa: note: no model is shipped yet ({display_dir(model_dir)} has no model.safetensors): the UI starts, "
              "but reading and asking need a model (rmtqa serve --model DIR)", file=sys.stderr)
    limit = args.max_upload_mb if args.max_upload_mb is not None else DEFAULT_MAX_UPLOAD_MB
    if limit <= 0:
        raise UserError("--max-upload-mb must be positive")
    demo = build_app(service, max_upload_mb=limit, local_paths=local_paths)
    try:
        _, local_url, share_url = launch_app(demo, host=args.host, port=args.port, share=args.share, auth=auth,
                                             max_upload_mb=limit, prevent_thread_lock=True, quiet=True)
        shown = local_url.replace("://0.0.0.0:", "://127.0.0.1:") if local_url else f"http://{args.host}:{args.port}/"
        print(f"rmtqa: corpora in {service.home}; the UI is at {shown}" + (f" and {share_url}" if share_url else "")
              + " (Ctrl-C stops it)", file=sys.stderr)
        demo.block_thread()
    finally:
        demo.rmtqa.jobs.stop()  # type: ignore[attr-defined]  # reading stops after its segment, saved
        demo.close()
    return 0
