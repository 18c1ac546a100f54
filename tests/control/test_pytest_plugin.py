"""The pytest plugin users get with the package, run the way a user's suite runs it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import httpx


def test_objective_with_a_fault(evaldock):
    objective = evaldock.surfaces["objective"]
    evaldock.control.fault("objective", status=503, count=1)
    auth = {"Authorization": "Bearer " + objective.credential}
    assert httpx.get(objective.base_url + "/v1/evaluations", headers=auth).status_code == 503
    assert httpx.get(objective.base_url + "/v1/evaluations", headers=auth).status_code == 200
    assert [e["status"] for e in evaldock.control.journal(surface="objective")] == [503, 200]


def test_held_job_advanced(evaldock):
    objective = evaldock.surfaces["objective"]
    evaldock.control.hold_jobs("objective")
    auth = {"Authorization": "Bearer test"}
    body = {"data": [{"query": "q", "object": {"t": "x"}}]}
    created = httpx.post(objective.base_url + "/v1/evaluations", json=body, headers=auth).json()
    assert evaldock.control.advance("objective", created["id"])["vendor_status"] == "processing"
    assert evaldock.control.advance("objective", created["id"])["vendor_status"] == "completed"


def test_each_test_starts_clean(evaldock):
    # The journal and faults of the tests above are gone: the fixture reset them.
    assert evaldock.control.journal() == []
    listed = httpx.get(
        evaldock.surfaces["objective"].base_url + "/v1/evaluations",
        headers={"Authorization": "Bearer test"},
    ).json()
    assert listed["evaluations"] == []
"""


@pytest.mark.slow
def test_plugin_fixtures_in_a_users_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
