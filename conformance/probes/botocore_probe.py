"""The botocore/boto3 probe: what the Python SDK resolves from IMDS, as one JSON object.

Run with the suite's venv. The endpoint and every other setting come from the environment
(`AWS_EC2_METADATA_SERVICE_ENDPOINT`, `AWS_EC2_METADATA_V1_DISABLED`, empty `AWS_CONFIG_FILE`
and `AWS_SHARED_CREDENTIALS_FILE`), as they would for any program on an instance.

Usage: botocore_probe.py credential-chain | instance-metadata-fetcher | region
"""

import json
import sys
import time

import boto3
import botocore
import botocore.session
import botocore.utils


def timed(function):
    """Runs function; returns {"ok": result} or {"err": message}, with milliseconds taken."""
    started = time.monotonic()
    try:
        outcome = {"ok": function()}
    except Exception as exception:  # The runner decides what a failure means.
        outcome = {"err": f"{type(exception).__name__}: {exception}"}
    outcome["ms"] = int((time.monotonic() - started) * 1000)
    return outcome


def credential_chain():
    """boto3's default credential chain, as `boto3.client(...)` would use it."""
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        return None
    frozen = credentials.get_frozen_credentials()
    return {
        "method": credentials.method,
        "access_key": frozen.access_key,
        "secret_key": frozen.secret_key,
        "token": frozen.token,
    }


def imds_config(session):
    """The IMDS settings botocore's own credential resolver passes to its fetchers."""
    return {
        "ec2_metadata_service_endpoint": session.get_config_variable(
            "ec2_metadata_service_endpoint"
        ),
        "ec2_metadata_service_endpoint_mode": botocore.utils.resolve_imds_endpoint_mode(session),
        "ec2_metadata_v1_disabled": session.get_config_variable("ec2_metadata_v1_disabled"),
    }


def instance_metadata_fetcher():
    session = botocore.session.get_session()
    fetcher = botocore.utils.InstanceMetadataFetcher(
        timeout=session.get_config_variable("metadata_service_timeout"),
        num_attempts=session.get_config_variable("metadata_service_num_attempts"),
        config=imds_config(session),
    )
    credentials = fetcher.retrieve_iam_role_credentials()
    return {key: value for key, value in credentials.items()}


def region():
    session = botocore.session.get_session()
    fetcher = botocore.utils.InstanceMetadataRegionFetcher(
        timeout=session.get_config_variable("metadata_service_timeout"),
        num_attempts=session.get_config_variable("metadata_service_num_attempts"),
        config=imds_config(session),
    )
    return {
        "region_fetcher": fetcher.retrieve_region(),
        "region_provider": botocore.utils.IMDSRegionProvider(session).provide(),
    }


CHECKS = {
    "credential-chain": credential_chain,
    "instance-metadata-fetcher": instance_metadata_fetcher,
    "region": region,
}


def main():
    report = timed(CHECKS[sys.argv[1]])
    report["versions"] = {"boto3": boto3.__version__, "botocore": botocore.__version__}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
