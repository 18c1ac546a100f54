"""Every operation of every spec has a handler; specs are served and well-formed."""

import inspect

import yaml

from evaldock.server.control.provider import ControlProvider
from evaldock.server.spec import load_specs, spec_files
from evaldock.server.surface import Provider, declaration_of


def test_every_operation_has_a_handler() -> None:
    missing = []
    for spec in load_specs():
        provider = (
            ControlProvider if spec.surface == "evaldock" else declaration_of(spec.surface).provider
        )
        assert issubclass(provider, Provider)
        for op in spec.operations:
            handler = getattr(provider, op.operation_id, None)
            if handler is None or not inspect.iscoroutinefunction(handler):
                missing.append(f"{spec.filename}: {op.method} {op.path} -> {op.operation_id}")
    assert not missing, "operations without an async handler:\n" + "\n".join(missing)


def test_operation_ids_are_unique_per_spec() -> None:
    for spec in load_specs():
        ids = [op.operation_id for op in spec.operations]
        assert len(ids) == len(set(ids)), spec.filename


def test_specs_ship_as_package_data() -> None:
    assert "objective.yaml" in spec_files()


def test_specs_are_served(client) -> None:
    for spec in load_specs():
        r = client.get(f"{spec.prefix}/openapi.yaml")
        assert r.status_code == 200
        assert yaml.safe_load(r.text)["paths"].keys() == spec.doc["paths"].keys()
        r = client.get(f"{spec.prefix}/openapi.json")
        # A surface served only under its prefix (OpenAI Evals) names it in servers.
        base = "http://testserver" + ("" if spec.root else spec.prefix)
        assert r.json()["servers"] == [{"url": base}]


def test_surfaces_index(client) -> None:
    surfaces = {s["surface"]: s for s in client.get("/_evaldock/surfaces").json()}
    assert "create_evaluation" in surfaces["objective"]["operations"]
