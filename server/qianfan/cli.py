"""``evaldock qianfan ...``: register evaluation datasets from JSON Lines files.

Registrations go to the data directory's database, so a running server sees them at once.

    evaldock qianfan add-dataset cases.jsonl --name demo            # every access key sees it
    evaldock qianfan add-dataset cases.jsonl --name demo --access-key AK
    evaldock qianfan list-datasets

Each line: ``{"prompt": "...", "reference": "..."}``, optionally ``"prediction"`` (rule
metrics then run on it without a model).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec

from ..auth import tenant_of
from ..config import Settings
from ..db import Database
from . import datasets as ds
from .auth import key_pairs
from .provider import QianfanSettings

DB_FILE = "evaldock.sqlite3"  # as server.app names it


def add_subcommand(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser("qianfan", help="Qianfan surface: register evaluation datasets")
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--data", help="state directory (default ./evaldock-data)")
    commands = parser.add_subparsers(dest="qianfan_command", required=True)
    add = commands.add_parser("add-dataset", help="register a JSON Lines dataset")
    add.add_argument("file", help="JSON Lines: prompt, reference, optional prediction")
    add.add_argument("--name", help="dataset name (default: the file's stem)")
    add.add_argument("--id", default="", help="fixed dataset id (default: a new ds-... id)")
    add.add_argument(
        "--access-key", help="only this access key sees it (default: every key sees it)"
    )
    commands.add_parser("list-datasets", help="list registered datasets")
    return parser


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (ds.DatasetInvalid, OSError, ValueError) as exc:
        print(f"evaldock qianfan: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    db = Database(settings.data_dir / DB_FILE)
    await db.open()
    try:
        await db.migrate("core", "evaldock.server")
        await db.migrate("qianfan", "evaldock.server.qianfan")
        if args.qianfan_command == "list-datasets":
            for row in await db.fetchall("SELECT * FROM qianfan_datasets ORDER BY created_at"):
                scope = "shared" if row["tenant"] is None else "one access key"
                print(f"{row['id']}  {row['name']}  cases={row['case_count']}  ({scope})")
            return 0
        return await _add(db, args, settings)
    finally:
        await db.close()


async def _add(db: Database, args: argparse.Namespace, settings: Settings) -> int:
    options = msgspec.convert(
        {**msgspec.to_builtins(QianfanSettings()), **settings.section("qianfan")},
        QianfanSettings,
        strict=False,
    )
    path = Path(args.file)
    cases = ds.parse_jsonl(path.read_bytes(), options.max_field_chars, options.max_cases)
    tenant = None
    if args.access_key:
        _, keys = settings.auth_for("qianfan")
        if args.access_key not in key_pairs(keys):
            raise ValueError("that access key is not one of [auth.qianfan] keys")
        tenant = tenant_of("qianfan", args.access_key)
    async with db.transaction() as tx:
        view = await ds.insert_dataset(tx, tenant, args.name or path.stem, cases, args.id)
    print(f"registered dataset {view['datasetId']} ({view['name']}): {view['caseCount']} cases")
    print(f'evaluate it with dataset_id="{view["datasetId"]}"')
    return 0
