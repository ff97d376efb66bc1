"""The ec2-metadata probe: what the PyPI `ec2-metadata` library reads, as one JSON object.

The library has no endpoint setting: it always asks http://169.254.169.254/latest/ with an
IMDSv2 token. conformance/run therefore runs this probe inside a network namespace where imds
listens on 169.254.169.254:80, and the library is used exactly as shipped.
"""

import base64
import json
import time
from importlib.metadata import version

from ec2_metadata import ec2_metadata

ATTRIBUTES = [
    "instance_id",
    "region",
    "availability_zone",
    "account_id",
    "instance_profile_name",
    "iam_security_credentials",
    "user_data",
]


def main():
    report = {"version": version("ec2-metadata"), "service_url": ec2_metadata.service_url}
    started = time.monotonic()
    for attribute in ATTRIBUTES:
        attribute_started = time.monotonic()
        try:
            value = getattr(ec2_metadata, attribute)
            if isinstance(value, bytes):
                value = {"base64": base64.b64encode(value).decode("ascii")}
            outcome = {"ok": value}
        except Exception as exception:  # The runner decides what a failure means.
            outcome = {"err": f"{type(exception).__name__}: {exception}"}
        outcome["ms"] = int((time.monotonic() - attribute_started) * 1000)
        report[attribute] = outcome
    report["ms"] = int((time.monotonic() - started) * 1000)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
