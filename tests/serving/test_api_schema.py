"""The OpenAPI schema describes every reply the routes give: schemathesis generates requests from
/openapi.json (valid and invalid ones, with the token, so that the write routes run too) and
checks each reply against it with every check it has, as `schemathesis run --checks all` does.

In process: schemathesis's engine (what its CLI runs) over its ASGI transport, which runs the
app's lifespan. Its pytest integration (`schemathesis.pytest.from_fixture`) reads a private
attribute pytest 9 no longer has, hence the engine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from schemathesis.specs.openapi.formats import unregister_string_format

from harness.asgi import AUTH, serving_settings
from harness.data import copy_workspace
from harness.images import b64
from serving.api import create_app

EXAMPLES = 20  # per operation and phase: 30-40 s for the whole schema on this machine
CLASSES = [str(digit) for digit in range(10)]


@pytest.fixture
def formats(samples) -> Iterator[None]:
    """Real values for what the schema's own formats say a string holds
    (serving_client.contract): an image file (as bytes, or as base64 in JSON) and a class of the
    served model. A schema says 'a non-empty string', not 'a picture a decoder reads', so without
    them every valid request would carry a non-image and positive_data_acceptance could judge
    nothing else."""
    images = st.sampled_from(list(samples.values()))
    registered = {
        "image": images,
        "image-base64": images.map(b64),
        "class-label": st.sampled_from(CLASSES),
    }
    for name, strategy in registered.items():
        schemathesis.openapi.format(name, strategy)
    yield
    for name in registered:
        unregister_string_format(name)


@pytest.mark.usefixtures("formats")
def test_every_reply_is_what_the_schema_says(built, tmp_path) -> None:
    app = create_app(serving_settings(copy_workspace(built, tmp_path), tmp_path / "secrets"))
    config = SchemathesisConfig.from_dict(
        {
            "seed": 23,
            "headers": AUTH,
            "checks": {"enabled": True},  # every check: `--checks all`
            "generation": {"max-examples": EXAMPLES},
            "phases": {"stateful": {"enabled": False}},  # no links between operations here
            # Literals of the app's source ('docs-assets', 'static') drawn into any string field,
            # whatever its format says: an image field would get a path name in a valid case.
            "analysis": {"constants": {"enabled": False}},
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    failures, errors, tested = [], [], Counter()
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for checks in event.recorder.checks.values():
                tested[event.recorder.label] += 1
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures.append(
                            f"{event.recorder.label} [{check.name}] {failure.title}: "
                            f"{failure.message[:300]}\n{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(repr(getattr(event, "value", getattr(event, "exception", event))))
    assert not errors, errors
    assert not failures, "\n\n".join(sorted(set(failures)))
    assert len(tested) == len(app.openapi()["paths"]), tested  # every operation (one per path)
    for operation in ("POST /predict", "POST /feedback", "POST /model/rollback"):
        assert tested[operation] >= EXAMPLES, tested
