"""The Public API client against the local stand-in: auth, retries, Retry-After, the 5,000-id limit."""

import pytest

from s2s_pipeline.privacy.public_api import PublicApiAuthError, PublicApiError, RegulationsClient
from s2s_pipeline_tests.privacy.public_api_standin import PublicApiStandIn


@pytest.fixture
def papi():
    with PublicApiStandIn() as standin:
        yield standin


def client(papi, sleeps, **kw):
    return RegulationsClient(papi.token, papi.base_url, sleep=sleeps.append, jitter=lambda: 0.0, **kw)


def test_a_500_then_success_files_one_regulation(papi):
    sleeps = []
    papi.fail_next(500)
    regulate_id = client(papi, sleeps).file("SUPPRESS_WITH_DELETE", ["user_1", "user_2"])
    assert list(papi.regulations) == [regulate_id]
    assert papi.regulations[regulate_id]["subjectIds"] == ["user_1", "user_2"]
    assert papi.regulations[regulate_id]["regulationType"] == "SUPPRESS_WITH_DELETE"
    assert len(sleeps) == 1 and [m for m, _ in papi.requests] == ["POST", "POST"]


def test_a_429_waits_what_retry_after_asks(papi):
    sleeps = []
    papi.fail_next(429, {"Retry-After": "7"})
    client(papi, sleeps).file("SUPPRESS_WITH_DELETE", ["user_1"])
    assert sleeps == [7.0] and len(papi.regulations) == 1


def test_status_is_read_back(papi):
    c = client(papi, [])
    regulate_id = c.file("DELETE_ONLY", ["user_1"])
    assert c.status(regulate_id).status == "INITIALIZED"
    papi.set_status(regulate_id, "FINISHED")
    assert c.status(regulate_id).status == "FINISHED"


def test_a_wrong_token_names_the_setting_and_never_shows_the_token(papi):
    bad = RegulationsClient("papi_wrong_secret", papi.base_url, sleep=lambda s: None)
    with pytest.raises(PublicApiAuthError) as exc:
        bad.file("SUPPRESS_WITH_DELETE", ["user_1"])
    assert "SEGMENT_PUBLIC_API_TOKEN" in str(exc.value) and "papi_wrong_secret" not in str(exc.value)
    assert "papi_wrong_secret" not in repr(bad)


def test_retries_run_out_with_a_clear_error_and_no_subject_ids_in_it(papi):
    papi.fail_next(503, times=10)
    with pytest.raises(PublicApiError) as exc:
        client(papi, [], max_retries=2).file("SUPPRESS_WITH_DELETE", ["user_secret_1"])
    assert "HTTP 503" in str(exc.value) and "user_secret_1" not in str(exc.value)
    assert papi.regulations == {} and len(papi.requests) == 3


def test_more_than_5000_ids_are_refused_before_any_request(papi):
    with pytest.raises(ValueError, match="5000"):
        client(papi, []).file("SUPPRESS_WITH_DELETE", [f"u{i}" for i in range(5001)])
    assert papi.requests == []
