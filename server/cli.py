"""The ``evaldock`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..engines.errors import EngineUnavailable
from .config import MODES, ConfigError, Settings, load_settings
from .marqtune import cli as marqtune_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaldock",
        description="Local, offline stand-in for hosted evaluation APIs "
        "(Objective, Marqtune, Oxen.ai, Spice.ai, Qianfan).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the server")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8700)")
    serve.add_argument("--data", help="state directory (default ./evaldock-data)")
    serve.add_argument("--config", help="TOML configuration file")
    serve.add_argument(
        "--mode", choices=MODES, help="engines: real models (default) or deterministic mocks"
    )
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    show = sub.add_parser("config", help="print the effective configuration as JSON")
    show.add_argument("--config", help="TOML configuration file")
    marqtune_cli.add_subcommand(sub)
    return parser


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {
        "server.host": getattr(args, "host", None),
        "server.port": getattr(args, "port", None),
        "server.data": getattr(args, "data", None),
        "server.mode": getattr(args, "mode", None),
        "server.log_level": getattr(args, "log_level", None),
    }


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
    return "\n".join(lines)


def serve(settings: Settings) -> int:
    import uvicorn

    from .app import create_app

    logging.basicConfig(
        level=settings.tree["server"]["log_level"].upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        app = create_app(settings)
    except EngineUnavailable as exc:
        print(f"evaldock: cannot start in {settings.mode} mode: {exc}", file=sys.stderr)
        print("  (or start with --mode mock for deterministic engines)", file=sys.stderr)
        return 2
    print(banner(settings, app.state), flush=True)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=str(settings.tree["server"]["log_level"]),
        lifespan="on",
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, _flags(args))
    except ConfigError as exc:
        print(f"evaldock: {exc}", file=sys.stderr)
        return 2
    if args.command == "marqtune":
        return marqtune_cli.run(args, settings)
    if args.command == "config":
        import json

        print(json.dumps(settings.tree, indent=2, default=str))
        return 0
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
