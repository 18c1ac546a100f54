"""``evaldock qianfan ...``: register evaluation datasets from JSON Lines files.

Registrations go to the data directory's database, so a running server sees them at once;
the commands use the surface's backend as the server does (``open_backend``: the
database opened and migrated, the dataset parsed by the same task, inline).

    evaldock qianfan add-dataset cases.jsonl --name demo            # every access key sees it
    evaldock qianfan add-dataset cases.jsonl --name demo --access-key AK
    evaldock qianfan list-datasets
    evaldock qianfan score ame-xxxx --score 0:满意度:1 --score 0:安全性:0 --finish

``score`` sends manual scores (``CASE:DIMENSION:SCORE``, -1 for not scored) to a
running server's extension endpoint, bce-auth-v1 signed like any call (``--url``, the
Qianfan mount; ``--access-key``/``--secret-key``, the development pair by default).

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
from ..surface import declaration_of, open_backend
from . import datasets as ds
from .auth import key_pairs
from .backend import QianfanBackend


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
    score = commands.add_parser("score", help="submit manual scores of a waiting task")
    score.add_argument("eval_id", help="the task's evalIdStr (ame-...) or evalId")
    score.add_argument(
        "--score",
        action="append",
        default=[],
        metavar="CASE:DIMENSION:SCORE",
        help="one score (repeat); SCORE on the dimension's scale, or -1 for not scored",
    )
    score.add_argument("--unit", help="evalUnitId or modelVersionId (needed with several)")
    score.add_argument("--impression", help="the model version's subjectiveImpression")
    score.add_argument("--finish", action="store_true", help="end manual scoring (-> Done)")
    score.add_argument("--url", default="http://127.0.0.1:8700/qianfan", help="Qianfan mount")
    score.add_argument("--access-key", dest="score_ak", default="test")
    score.add_argument("--secret-key", dest="score_sk", default="test")
    return parser


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.qianfan_command == "score":
            return _score(args)
        return asyncio.run(_run(args, settings))
    except (ds.DatasetInvalid, OSError, ValueError) as exc:
        print(f"evaldock qianfan: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    backend: QianfanBackend
    async with open_backend(declaration_of("qianfan"), settings) as backend:
        if args.qianfan_command == "list-datasets":
            for row in await backend.datasets(None):
                scope = "shared" if row["tenant"] is None else "one access key"
                print(f"{row['id']}  {row['name']}  cases={row['case_count']}  ({scope})")
            return 0
        return await _add(backend, args, settings)


async def _add(backend: QianfanBackend, args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    tenant = None
    if args.access_key:
        _, keys = settings.auth_for("qianfan")
        if args.access_key not in key_pairs(keys):
            raise ValueError("that access key is not one of [auth.qianfan] keys")
        tenant = tenant_of("qianfan", args.access_key)
    view = await backend.register_dataset(
        tenant, args.name or path.stem, str(path), "jsonl", args.id
    )
    print(f"registered dataset {view['datasetId']} ({view['name']}): {view['caseCount']} cases")
    print(f'evaluate it with dataset_id="{view["datasetId"]}"')
    return 0


SCORE_ROUTE = "/wenxinworkshop/evaldock/eval/manual/score"


def score_body(args: argparse.Namespace) -> dict[str, Any]:
    """The extension endpoint's body from the command line."""
    eval_id: int | str = int(args.eval_id) if args.eval_id.isdigit() else args.eval_id
    unit = {"evalUnitId": args.unit} if args.unit else {}
    scores = []
    for text in args.score:
        parts = text.split(":")
        case, value, dimension = parts[0].strip(), parts[-1].strip(), ":".join(parts[1:-1])
        if len(parts) < 3 or not case.isdigit() or not dimension or not _is_int(value):
            raise ValueError(f"--score {text!r}: write CASE:DIMENSION:SCORE, e.g. 0:满意度:1")
        scores.append({**unit, "caseIndex": int(case), "dimension": dimension, "score": int(value)})
    body: dict[str, Any] = {"id": eval_id, "scores": scores, "finish": bool(args.finish)}
    if args.impression is not None:
        body["subjectiveImpressions"] = [{**unit, "subjectiveImpression": args.impression}]
    return body


def _is_int(text: str) -> bool:
    return text.removeprefix("-").isdigit()


def _score(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from urllib.parse import urlsplit
    from urllib.request import Request, urlopen

    from .signing import canonical_time, sign

    body = score_body(args)
    base = args.url.rstrip("/")
    moment = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "host": urlsplit(base).netloc,
        "x-bce-date": canonical_time(moment),
    }
    headers["authorization"] = sign(
        "POST", SCORE_ROUTE, [], headers, args.score_ak, args.score_sk, timestamp=moment
    )
    request = Request(
        base + SCORE_ROUTE, data=msgspec.json.encode(body), headers=headers, method="POST"
    )
    with urlopen(request, timeout=60) as response:
        answer = msgspec.json.decode(response.read())
    if "error_code" in answer:
        print(f"evaldock qianfan: {answer['error_msg']}", file=sys.stderr)
        return 1
    result = answer["result"]
    print(
        f"{result['evalIdStr']}: {result['scored']} of {result['needed']} scores held"
        + ("; manual scoring finished" if result["finished"] else "")
    )
    return 0
