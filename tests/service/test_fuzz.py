"""Schema-driven fuzzing of every route of a real server: requests generated from its own OpenAPI document, valid
and invalid, never get a server error, valid ones pass its validation, invalid ones are refused with 4xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.service.conftest import infer_body
from tests.service.models import build_repository
from tests.service.server import Server

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (dev extra)")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

CASES = 1200  # generated requests per run, valid and invalid, over every documented operation
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, negative_data_rejection]
# A valid inference body must also name the tensors of the model in its path: the model metadata route states them,
# the document's generic tensor schema cannot, so a valid body's acceptance there is tested against a real model in
# test_api.py and here only the other operations must accept every valid body.
MODEL_DEPENDENT = ("/infer", ":predict")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzzed")
    running = Server(build_repository(root / "models"), log=root / "server.log")  # defaults: no token, so load/unload are 403
    yield running
    assert running.stop(), running.output()


def test_generated_requests_never_get_a_server_error(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    # Half the cases name a served model (and version), so their bodies reach the decoders instead of a 404.
    served = {"model_name": "digits", "model_version": "2"}
    strategy = st.one_of(
        *(schema.as_strategy(mode, path_parameters=parameters) for mode in schemathesis.GenerationMode for parameters in (None, served))
    )
    statuses: Counter[int] = Counter()
    seen: Counter[str] = Counter()

    @settings(
        max_examples=CASES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def request_is_answered_as_documented(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.url, timeout=30)
        statuses[response.status_code] += 1
        seen[f"{case.operation.method.upper()} {case.operation.path} {response.status_code}"] += 1
        model_dependent = case.operation.path.endswith(MODEL_DEPENDENT)
        case.validate_response(response, checks=CHECKS if model_dependent else [*CHECKS, positive_data_acceptance])

    request_is_answered_as_documented()
    assert sum(statuses.values()) >= 1000, seen
    assert not [status for status in statuses if status >= 500], seen
    assert httpx.post(f"{server.url}/v2/models/digits/infer", content=infer_body(np.zeros((1, 64), dtype=np.float32))).status_code == 200
    assert "Traceback" not in server.output(), server.output()
