"""The OpenTelemetry ECS resource detector probe: what `AwsEcsResourceDetector`
(opentelemetry-sdk-extension-aws) reads from the task metadata endpoint v4, as one JSON object.

Run with the suite's venv and `ECS_CONTAINER_METADATA_URI_V4` pointing at a container's endpoint
on the container listener, as the ECS agent sets it in every container.
"""

import json
import os
import sys
import time

from opentelemetry.sdk.extension.aws.resource.ecs import AwsEcsResourceDetector


def main():
    endpoint = os.environ.get("ECS_CONTAINER_METADATA_URI_V4", "")
    if not endpoint.startswith("http://127."):
        print("otel probe: ECS_CONTAINER_METADATA_URI_V4 must be a loopback URL", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        # raise_on_error: a failure is reported rather than turned into an empty resource.
        resource = AwsEcsResourceDetector(raise_on_error=True).detect()
        outcome = {"ok": {key: value for key, value in resource.attributes.items()}}
    except Exception as exception:
        outcome = {"err": f"{type(exception).__name__}: {exception}"}
    outcome["ms"] = int((time.monotonic() - started) * 1000)
    print(json.dumps({"resource": outcome}, default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
