"""The cloud-init probe: runs Debian's cloud-init EC2 datasource against a running imds.

Run with Debian's own interpreter (/usr/bin/python3), where the cloud-init package installs its
modules. It builds `DataSourceEc2` as cloud-init's init stage does (system config, a Debian
distro object, paths in a scratch directory) and calls `get_data()`, which waits for the
service, probes the API version, and crawls user-data, meta-data/ and, on AWS,
dynamic/instance-identity. It prints one JSON object with what the datasource ended up with;
conformance/run compares it with the configured instance.

The only thing stood in for is the hardware: cloud-init reads the DMI or Xen UUID to decide
whether it runs on AWS (IMDSv2 with a token, plus the identity document) or elsewhere (IMDSv1
only). `--platform aws` reports an EC2 hypervisor UUID, `--platform other` a plain one; both
are fixed so that the machine the suite runs on cannot change the outcome.

Usage: cloudinit_probe.py --url http://127.0.0.1:PORT --platform aws|other --scratch DIR
"""

import argparse
import base64
import json
import logging
import sys
import time

from cloudinit import distros, helpers
from cloudinit import version as cloudinit_version
from cloudinit.sources import DataSourceEc2 as ec2_datasource_module
from cloudinit.sources.helpers import ec2 as ec2_helpers

# What /sys/hypervisor/uuid and DMI say on a Xen-based EC2 instance, and on anything else.
PLATFORM_DATA = {
    "aws": {
        "uuid": "ec2e1916-9099-7caf-fd21-012345abcdef",
        "uuid_source": "hypervisor",
        "serial": "ec2e1916-9099-7caf-fd21-012345abcdef",
        "asset_tag": "",
        "vendor": "amazon ec2",
        "product_name": "t3.small",
    },
    "other": {
        "uuid": "4c4c4544-0042-3610-8031-b4c04f4e4d32",
        "uuid_source": "dmi",
        "serial": "conformance",
        "asset_tag": "",
        "vendor": "qemu",
        "product_name": "standard pc",
    },
}


def jsonable(value):
    """Crawled values with bytes turned into {"base64": ...}."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--platform", choices=sorted(PLATFORM_DATA), required=True)
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--max-wait", type=int, default=5)
    args = parser.parse_args()

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        force=True,
    )
    platform = PLATFORM_DATA[args.platform]
    ec2_datasource_module._collect_platform_data = lambda: dict(platform)

    # The datasource settings a user writes in /etc/cloud/cloud.cfg.d/ to point cloud-init at
    # another metadata address; max_wait bounds how long it waits for the service.
    sys_cfg = {
        "datasource": {
            "Ec2": {
                "metadata_urls": [args.url],
                "max_wait": args.max_wait,
                "timeout": 2,
                "strict_id": "warn",
            }
        }
    }
    paths = helpers.Paths(
        {
            "cloud_dir": f"{args.scratch}/var-lib-cloud",
            "run_dir": f"{args.scratch}/run-cloud-init",
            "templates_dir": "/etc/cloud/templates",
        }
    )
    distro = distros.fetch("debian")("debian", {}, paths)
    datasource = ec2_datasource_module.DataSourceEc2(sys_cfg, distro, paths)

    started = time.monotonic()
    try:
        found = datasource.get_data()
        error = None
    except Exception as exception:  # The run reports it; the runner decides.
        found = False
        error = f"{type(exception).__name__}: {exception}"
    elapsed_ms = int((time.monotonic() - started) * 1000)

    report = {
        "cloud_init_version": cloudinit_version.version_string(),
        "cloud_name": datasource.cloud_name,
        "found": bool(found),
        "error": error,
        "ms": elapsed_ms,
        "default_api_version": datasource.extended_metadata_versions[0],
    }
    if found:
        crawled = datasource._crawled_metadata
        report.update(
            {
                "api_version": crawled.get("_metadata_api_version"),
                "instance_id": datasource.get_instance_id(),
                "availability_zone": datasource.availability_zone,
                "region": datasource.region,
                "public_ssh_keys": datasource.get_public_ssh_keys(),
                "used_token": bool(datasource._api_token),
                "meta_data": jsonable(datasource.metadata),
                "user_data": jsonable(datasource.get_userdata_raw()),
                "dynamic": jsonable(crawled.get("dynamic")),
            }
        )
        # The helper-level crawl on its own, with the API version cloud-init asks for first.
        headers = datasource._get_headers()
        report["helper_crawl"] = {
            "meta_data_instance_id": ec2_helpers.get_instance_metadata(
                report["default_api_version"], args.url, headers_cb=lambda url: headers
            ).get("instance-id"),
            "user_data": jsonable(
                ec2_helpers.get_instance_userdata(
                    report["default_api_version"], args.url, headers_cb=lambda url: headers
                )
            ),
            "identity_instance_id": ec2_helpers.get_instance_identity(
                report["default_api_version"], args.url, headers_cb=lambda url: headers
            )
            .get("document", {})
            .get("instanceId"),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
