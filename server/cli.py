"""The ``evaldock`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from evaldock.engines.errors import EngineUnavailable

from .config import DEV_KEY, MODES, ConfigError, Settings
from .load import load_settings
from .surface import SurfaceDeclaration, declarations

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# `evaldock jobs --watch` redraws this often: the dashboard's live pages poll at 1 s too.
WATCH_SECONDS = 1.0
BAR_WIDTH = 30


# Options every command takes, before or after its subcommand's name
# (``evaldock --data D qianfan add-dataset F`` and ``evaldock qianfan add-dataset F --data D``).
COMMON: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--config", {"help": "TOML configuration file"}),
    ("--data", {"help": "state directory (default ./evaldock-data)"}),
    (
        "--mode",
        {"choices": MODES, "help": "engines: real models (default) or deterministic mocks"},
    ),
)


def _add_common(parser: argparse.ArgumentParser, top: bool) -> None:
    """Give ``parser`` and every subcommand below it the common options.

    A subcommand's parser writes its defaults over what the levels above parsed, so below
    the top every common option defaults to "absent" (SUPPRESS): ``--data`` given before
    the subcommand's name survives a subcommand that has its own ``--data``.
    """
    present = {o for action in parser._actions for o in action.option_strings}
    for flag, kwargs in COMMON:
        if flag not in present:
            parser.add_argument(flag, **kwargs)
    if not top:
        for action in parser._actions:
            if any(flag in action.option_strings for flag, _ in COMMON):
                action.default = argparse.SUPPRESS
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_common(child, top=False)


def _parser(decls: list[SurfaceDeclaration]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaldock",
        description="Local, offline stand-in for hosted evaluation APIs "
        "(Objective, Marqtune, Oxen.ai, Spice.ai, Qianfan).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the server")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8700)")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    serve.add_argument(
        "--surfaces",
        help="comma-separated surfaces to serve (default all: "
        + ",".join(d.name for d in decls)
        + "); real mode then needs only their engines",
    )
    for decl in decls:
        for option in decl.serve_flags:
            serve.add_argument(
                option.flag,
                dest=f"setting:{option.setting}",
                metavar=option.flag.lstrip("-").upper(),
                help=f"{option.help} ({decl.name})",
            )
    sub.add_parser(
        "config",
        help="print the effective configuration as JSON (files, environment and options "
        "merged; the judge as it would serve)",
    )
    jobs = sub.add_parser("jobs", help="queued, running and waiting jobs with progress")
    jobs.add_argument("--url", help="server URL (default from [server] host/port)")
    jobs.add_argument("--surface", help="only this surface's jobs")
    jobs.add_argument("--all", action="store_true", help="include finished jobs")
    jobs.add_argument(
        "--watch",
        action="store_true",
        help="redraw every second with a progress bar per job until Ctrl-C",
    )
    jobs.add_argument(
        "--interval",
        type=float,
        default=WATCH_SECONDS,
        help=f"seconds between redraws with --watch (default {WATCH_SECONDS:g}, at least 0.1)",
    )
    for decl in decls:
        if decl.cli is not None:
            decl.cli.add_subcommand(sub)
    _add_common(parser, top=True)
    return parser


def _flags(args: argparse.Namespace) -> dict[str, object]:
    surface_flags = {
        name.removeprefix("setting:"): value
        for name, value in vars(args).items()
        if name.startswith("setting:")
    }
    return surface_flags | {
        "server.host": getattr(args, "host", None),
        "server.port": getattr(args, "port", None),
        "server.data": getattr(args, "data", None),
        "server.mode": getattr(args, "mode", None),
        "server.log_level": getattr(args, "log_level", None),
        "server.surfaces": getattr(args, "surfaces", None),
    }


SECRET_NAMES = frozenset({"keys", "key", "api_key", "secret", "token", "password"})


def masked_config(node: Any, name: str = "") -> Any:
    """The configuration with every credential masked (keys never reach a terminal log)."""
    from .masking import mask_key

    if isinstance(node, dict):
        return {k: masked_config(v, k) for k, v in node.items()}
    if name in SECRET_NAMES:
        if isinstance(node, list):
            return [mask_key(str(v)) for v in node]
        if isinstance(node, str):
            return ",".join(mask_key(v) for v in node.split(",")) if node else node
    return node


def judge_summary(settings: Settings) -> str:
    """The judge that serves, however chosen ([judge], [engines.judge], EVALDOCK_JUDGE_*)."""
    impl, options = settings.engine_choice("judge")
    if impl == "openai":
        model = options.get("model") or "the model each server serves"
        return f"openai-compatible server {', '.join(options['urls'])}, model {model}"
    if impl == "similarity":
        return "similarity (embedded, offline: embedding similarity, not a reading judge)"
    return f"{impl} (deterministic)" if impl == "mock" else impl


def effective_config(settings: Settings) -> dict[str, Any]:
    """``evaldock config``'s answer: the merged tree, the judge as it would serve (the
    environment's EVALDOCK_JUDGE_* included), every credential masked."""
    tree = dict(settings.tree)
    impl, options = settings.engine_choice("judge")
    tree["judge"] = {"impl": impl, **options}
    shown: dict[str, Any] = masked_config(tree)
    return shown


def exposed_dev_keys(settings: Settings, surfaces: list[str]) -> list[str]:
    """Surfaces that accept the public development key while bound beyond loopback."""
    if settings.host in LOOPBACK:
        return []
    return [s for s in surfaces if settings.auth_for(s)[0] and DEV_KEY in settings.auth_for(s)[1]]


def banner(settings: Settings, app_state: object) -> str:
    base = f"http://{settings.host}:{settings.port}"
    lines = [f"evaldock {settings.mode} mode, data in {settings.data_dir.resolve()}"]
    for rt in getattr(app_state, "runtimes", []):
        spec, provider = rt.spec, rt.provider
        enabled, _ = settings.auth_for(spec.surface)
        creds = provider.credentials_hint() if enabled else "no auth"
        lines.append(
            f"  {spec.surface:<10} {base}  (also {base}{spec.prefix})  {creds}"
            f"  spec: {base}{spec.prefix}/openapi.yaml"
        )
    control = getattr(app_state, "control", None)
    if control is not None:
        lines.extend(control.banner_lines())
        if control.enabled:
            how = "open, no login" if control.open else "log in with the control key"
            lines.append(f"  dashboard  {base}/_evaldock/ui/  ({how})")
    lines.append(f"  judge      {judge_summary(settings)}")
    served = [rt.spec.surface for rt in getattr(app_state, "runtimes", [])]
    exposed = exposed_dev_keys(settings, served)
    if exposed:
        lines.append(
            f"  WARNING: bound to {settings.host} while the public development key "
            f"{DEV_KEY!r} is valid for {', '.join(exposed)}: anyone who can reach this "
            "port can use it. Set real keys in [auth.<surface>] keys "
            "(or EVALDOCK_AUTH__<SURFACE>__KEYS)."
        )
    return "\n".join(lines)


class StartupTraceback(logging.Filter):
    """Drops uvicorn's traceback of a start-up refusal already told with its fix.

    The lifespan logs ``cannot start: <reason>\n  fix: <what to do>``; Starlette then
    hands uvicorn the whole traceback of the same error (~20 lines) to print after it,
    burying the fix. ``--log-level debug`` keeps it.
    """

    MARK = f"\n{EngineUnavailable.__module__}.{EngineUnavailable.__qualname__}: "

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.msg if isinstance(record.msg, str) else ""
        return not (text.startswith("Traceback (most recent call last):") and self.MARK in text)


def serve(settings: Settings) -> int:
    import uvicorn

    from .app import create_app
    from .datadir import prepare_data_dir
    from .http import uvicorn_config

    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("evaldock")
    if settings.server.log_level != "debug":
        logging.getLogger("uvicorn.error").addFilter(StartupTraceback())
    # Only here, not in other commands: it removes crash leftovers (.incoming-*), which
    # a CLI command running beside a live server must not touch.
    prepare_data_dir(settings.data_dir, log)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        print(f"evaldock: {exc}", file=sys.stderr)
        return 2
    except EngineUnavailable as exc:
        print(f"evaldock: cannot start in {settings.mode} mode: {exc}", file=sys.stderr)
        print(
            "  (or start with --mode mock for deterministic engines, or serve only the "
            "surfaces you need: --surfaces / [server] surfaces, e.g. --surfaces objective)",
            file=sys.stderr,
        )
        return 2
    text = banner(settings, app.state)
    print(text, flush=True)
    for line in text.splitlines():
        if "WARNING" in line:
            log.warning("%s", line.strip())
    server = settings.server
    try:
        config = uvicorn_config(
            app,
            server.host,
            server.port,
            log_level=server.log_level,
            header_timeout=server.header_timeout,
            body_timeout=server.body_timeout,
            max_connections=server.max_connections,
        )
    except ValueError as exc:
        print(f"evaldock: {exc}", file=sys.stderr)
        return 2
    uvicorn.Server(config).run()
    return 0


def show_jobs(args: argparse.Namespace, settings: Settings) -> int:
    """``evaldock jobs``: what a person watching a long evaluation wants to see."""
    from .negotiation import to_text_table
    from .testing.client import ControlClient

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = args.url or f"http://{host}:{settings.port}"
    key = settings.control.key
    if not key:
        path = settings.data_dir / "control.key"
        if not path.is_file():
            print(
                f"evaldock: no control key at {path}; pass --data or set [control] key",
                file=sys.stderr,
            )
            return 2
        key = path.read_text().strip()
    client = ControlClient(url, key)
    if getattr(args, "watch", False):
        try:
            return watch_jobs(client, url, args.surface, args.all, max(0.1, args.interval))
        finally:
            client.close()
    try:
        jobs = client.jobs(args.surface, all=args.all)
    except Exception as exc:  # connection refused, 401: say so, no traceback
        print(f"evaldock: cannot list jobs from {url}: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    rows = [
        {
            **j,
            "progress": f"{j['processed']}/{j['total']}"
            + (f" ({100 * j['processed'] // j['total']}%)" if j["total"] else ""),
        }
        for j in jobs
    ]
    columns = ["surface", "id", "status", "vendor_status", "progress", "created_at", "error"]
    print(to_text_table(rows, columns), end="")
    return 0


def progress_bar(processed: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#########---------]  9/18  50%`` (ASCII: any terminal, any log)."""
    if total <= 0:
        return f"[{'-' * width}] {processed}/?"
    done = min(width, width * processed // total)
    return (
        f"[{'#' * done}{'-' * (width - done)}] {processed}/{total} {100 * processed // total:3d}%"
    )


def jobs_frame(
    jobs: list[dict[str, Any]], ended: dict[str, dict[str, Any]], url: str, now: str
) -> str:
    """One redraw of ``evaldock jobs --watch``: a line per job, its bar, what ended."""
    lines = [f"evaldock jobs at {url}  {now}  (Ctrl-C to stop)", ""]
    if not jobs and not ended:
        lines.append("no job is queued, running or waiting")
    for j in jobs:
        vendor = j["vendor_status"]
        vendor = " / ".join(vendor) if isinstance(vendor, list) else str(vendor)
        held = " held" if j.get("held") else ""
        lines.append(
            f"{j['surface']:<10} {j['id']:<34} {j['status']:<10} "
            f"{progress_bar(int(j['processed']), int(j['total']))}  {vendor}{held}"
        )
    for job_id, j in ended.items():
        lines.append(
            f"{j['surface']:<10} {job_id:<34} {'ended':<10} "
            f"{progress_bar(int(j['processed']), int(j['total']))}  no longer in progress"
        )
    return "\n".join(lines) + "\n"


def watch_jobs(
    client: Any,
    url: str,
    surface: str | None,
    everything: bool,
    interval: float,
    out: Any = None,
    frames: int | None = None,
) -> int:
    """Redraw the jobs every ``interval`` seconds until Ctrl-C (0) or ``frames`` redraws.

    On a terminal each frame replaces the last (ANSI clear); piped, frames follow one
    another, so a log or a test reads every one. A job that leaves the listing (it ended)
    stays one frame as "ended"."""
    import time
    from datetime import datetime

    out = out or sys.stdout
    tty = bool(getattr(out, "isatty", lambda: False)())
    last: dict[str, dict[str, Any]] = {}
    drawn = 0
    try:
        while True:
            now = datetime.now().strftime("%H:%M:%S")
            try:
                jobs = client.jobs(surface, all=everything)
            except Exception as exc:  # the server restarting: say so, keep watching
                frame = f"evaldock: cannot list jobs from {url}: {exc} (retrying)\n"
            else:
                current = {j["id"]: j for j in jobs}
                ended = {k: v for k, v in last.items() if k not in current}
                last = current
                frame = jobs_frame(jobs, ended, url, now)
            out.write(("\x1b[H\x1b[2J" if tty else "") + frame + ("" if tty else "\n"))
            out.flush()
            drawn += 1
            if frames is not None and drawn >= frames:
                return 0
            time.sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    decls = declarations()
    args = _parser(decls).parse_args(argv)
    try:
        settings = load_settings(args.config, _flags(args))
    except ConfigError as exc:
        print(f"evaldock: {exc}", file=sys.stderr)
        return 2
    for decl in decls:
        if decl.cli is not None and args.command == decl.name:
            return int(decl.cli.run(args, settings))
    if args.command == "jobs":
        return show_jobs(args, settings)
    if args.command == "config":
        import json

        print(json.dumps(effective_config(settings), indent=2, default=str))
        return 0
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
