"""``evaldock marqtune ...``: register local "marqtuned" models (open_clip checkpoints).

Wired into the main command with :func:`add_subcommand` and :func:`run`; also runnable
alone as ``python -m evaldock.server.marqtune.cli``. Registrations go to the data
directory's database through the surface's backend (the core's ``open_backend``), so a
running server sees them at once.

    evaldock marqtune add-model my-tuned --base-model ViT-B-32 --checkpoints runs/x/checkpoints
    evaldock marqtune add-model tiny --base-model ViT-B-32 --checkpoint epoch_1=/ckpt/e1.pt
    evaldock marqtune list-models
    evaldock marqtune remove-model 3f8e...
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..auth import tenant_of
from ..config import ConfigError, Settings
from ..load import load_settings
from .registry import ModelConfigError, checkpoints_from

if TYPE_CHECKING:
    from .backend import MarqtuneBackend


def add_subcommand(sub: Any) -> argparse.ArgumentParser:
    """Add ``marqtune`` to the main parser's subcommands."""
    parser = sub.add_parser("marqtune", help="Marqtune surface: register local open_clip models")
    _arguments(parser)
    return parser


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--data", help="state directory (default ./evaldock-data)")
    commands = parser.add_subparsers(dest="marqtune_command", required=True)
    add = commands.add_parser(
        "add-model",
        help="register an open_clip model's checkpoints (epoch_N) as a marqtuned model",
    )
    add.add_argument("name", help="model name, shown as modelName")
    add.add_argument(
        "--base-model",
        required=True,
        help="open_clip architecture of the checkpoints (ViT-B-32, or a custom one whose "
        "<name>.json lies beside the checkpoint files)",
    )
    add.add_argument("--checkpoints", help="folder of epoch_N.pt files (open_clip's output)")
    add.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="epoch_N=FILE",
        help="one checkpoint file; repeat for several",
    )
    add.add_argument("--id", help="fixed model id (a UUID); a new one by default")
    add.add_argument(
        "--api-key", help="only this API key sees the model (default: every key sees it)"
    )
    commands.add_parser("list-models", help="list configured and registered models")
    remove = commands.add_parser("remove-model", help="unregister a model (files stay)")
    remove.add_argument("model_id")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (ModelConfigError, ConfigError) as exc:
        print(f"evaldock marqtune: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: the surface's package imports this module for its declaration.
    from ..surface import declaration_of, open_backend

    backend: MarqtuneBackend
    async with open_backend(declaration_of("marqtune"), settings) as backend:
        if args.marqtune_command == "add-model":
            return await _add(backend, args, settings)
        if args.marqtune_command == "list-models":
            for m in await backend.visible_models(None):
                scope = "config" if m.source == "config" else ("one key" if m.tenant else "shared")
                print(
                    f"{m.id}  {m.name}  base={m.base_model}  "
                    f"checkpoints={','.join(m.checkpoints)}  ({scope})"
                )
            for r in await backend.models.for_one_key():
                print(f"{r.id}  {r.name}  (registered for one API key)")
            return 0
        found = await backend.models.get(args.model_id, None, any_tenant=True)
        if found is None or found.source == "config":
            where = "the [marqtune.models] configuration" if found else "the registered models"
            print(f"evaldock marqtune: {args.model_id} is not in {where}", file=sys.stderr)
            return 1
        await backend.unregister_model(found)
        print(f"removed {found.id} ({found.name}); its checkpoint files were left in place")
        return 0


async def _add(backend: MarqtuneBackend, args: argparse.Namespace, settings: Settings) -> int:
    checkpoints: dict[str, str] = {}
    if args.checkpoints:
        checkpoints.update(checkpoints_from(args.checkpoints, "--checkpoints"))
    pairs = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ModelConfigError(f"--checkpoint takes epoch_N=FILE, not {item!r}")
        pairs[name.strip()] = path.strip()
    if pairs:
        checkpoints.update(checkpoints_from(pairs, "--checkpoint"))
    if not checkpoints:
        raise ModelConfigError("give --checkpoints FOLDER or --checkpoint epoch_N=FILE")
    tenant = None
    if args.api_key:
        enabled, keys = settings.auth_for("marqtune")
        if enabled and args.api_key not in keys:
            raise ModelConfigError(
                "that API key is not one of the Marqtune keys ([auth.marqtune] keys)"
            )
        tenant = tenant_of("marqtune", args.api_key) if enabled else "public"
    entry = await backend.register_model(
        args.name, args.base_model, checkpoints, tenant=tenant, model_id=args.id
    )
    last = list(entry.checkpoints)[-1]
    print(f"registered model {entry.id} ({entry.name}): checkpoints {', '.join(entry.checkpoints)}")
    print(f'evaluate it with model="{entry.id}/{last}"')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evaldock marqtune", description=__doc__.split("\n")[0])
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, {"server.data": args.data})
    except ConfigError as exc:
        print(f"evaldock: {exc}", file=sys.stderr)
        return 2
    return run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
