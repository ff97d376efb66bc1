"""The real-client conformance suite: real AWS clients against the release imds binary.

For each mode (tokens optional, tokens required, endpoint disabled) this starts
`target/release/imds` with conformance/instance.toml on 127.0.0.1 (port 0, address read from
its `Listening.` log line) and, inside a network namespace of its own, on 169.254.169.254:80.
It then runs every client against them, compares what each client got with what the server was
configured with (and with the credentials the server is serving, fetched directly), prints one
PASS/FAIL line per client, check and mode, and writes conformance/results.md.

A mode where AWS refuses a client (tokens required for an IMDSv1-only client, the endpoint
disabled for everyone) passes only when the client fails the way it fails on AWS, within
CLEAN_FAILURE_LIMIT_S seconds.

Usage: conformance/run [CLIENT ...]   (CLIENT filters by name, e.g. `conformance/run curl`)

# Layout
- Instance, Mode, Server, Namespace: what is served, how, and where.
- Suite: runs the checks of one mode and records the outcomes.
- check_* functions: one per client; each runs the client and judges what it printed.
- write_results: the markdown table.
"""

import base64
import datetime
import http.server
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path

CONFORMANCE_DIR = Path(__file__).resolve().parent
REPO_DIR = CONFORMANCE_DIR.parent
IMDS_BINARY = REPO_DIR / "target" / "release" / "imds"
INSTANCE_CONFIG = CONFORMANCE_DIR / "instance.toml"
PROBES_DIR = CONFORMANCE_DIR / "probes"
VENV_PYTHON = CONFORMANCE_DIR / ".venv" / "bin" / "python"
AWS_CLI = CONFORMANCE_DIR / ".venv" / "bin" / "aws"
DEBIAN_PYTHON = Path("/usr/bin/python3")
RUST_MANIFEST = CONFORMANCE_DIR / "rust" / "Cargo.toml"
RUST_TARGET_DIR = CONFORMANCE_DIR / "rust" / "target"
RUST_PROBE = RUST_TARGET_DIR / "release" / "imds-conformance-rust"
JS_DIR = CONFORMANCE_DIR / "js"
GO_PROBE_DIR = CONFORMANCE_DIR / "go" / "probe"
GO_PROBE = CONFORMANCE_DIR / "go" / "target" / "imds-conformance-go"
# Debian's Go sources of the SDKs (golang-github-aws-aws-sdk-go-v2-dev and -aws-sdk-go-dev),
# built in GOPATH mode: no module proxy is needed.
GO_PATH = Path("/usr/share/gocode")
RESULTS_FILE = CONFORMANCE_DIR / "results.md"

sys.path.insert(0, str(PROBES_DIR))
import raw_imds  # noqa: E402  (the suite's own plain-HTTP view of a server)

# A client refused by the server must give up within this many seconds: failing cleanly means
# failing quickly, not hanging until someone notices.
CLEAN_FAILURE_LIMIT_S = 10.0
# A Node.js client must exit within this long after its last call ends (its sockets closed).
EXIT_LAG_LIMIT_S = 2.0
# Any one client run is stopped after this long and counted as hung.
CLIENT_RUN_LIMIT_S = 60.0
# The server must log its `Listening.` line within this long.
SERVER_READY_LIMIT_S = 10.0
# The link-local address every EC2 client uses by default; only ever bound and asked inside
# the suite's own network namespace.
LINK_LOCAL_ADDRESS = "169.254.169.254"
# The ECS agent's credentials endpoint and the EKS Pod Identity agent, inside the namespace.
ECS_ADDRESS = "169.254.170.2"
POD_IDENTITY_ADDRESS = "169.254.170.23"
# The first API version cloud-init 22.4 asks for (DataSourceEc2.extended_metadata_versions).
CLOUD_INIT_API_VERSION = "2021-03-23"
# cloud-init's max_wait for these runs: how long it keeps retrying before giving up.
CLOUD_INIT_MAX_WAIT_S = 5

# Proxy settings of the calling environment would send some clients' requests elsewhere.
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
LISTENING_LINE = re.compile(r"Listening\. address=(\S+)")
CONTAINER_LINE = re.compile(r"Container credentials ready\. address=(\S+)")
# The container endpoints of conformance/instance.toml: a route's authorization token and the
# task container whose task metadata endpoint the OpenTelemetry detector reads.
CONTAINER_TOKEN = "conformance-container-token"


class CheckFailed(Exception):
    """A client did not do what it must in this mode; the message says what it did."""


def expect_equal(what, got, want):
    if got != want:
        raise CheckFailed(f"{what}: got {shorten(got)}, expected {shorten(want)}")


def expect_same_keys(got, want, names=("access_key_id", "secret_access_key", "session_token")):
    """A client's credentials (`got`, its fields named `names`) are the served document `want`'s."""
    access, secret, session = names
    expect_equal("access key id", got[access], want["AccessKeyId"])
    expect_equal("secret", got[secret], want["SecretAccessKey"])
    expect_equal("session token", got[session], want["Token"])


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def shorten(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Instance:
    """What conformance/instance.toml says the instance is: the values clients must report."""

    instance_id: str
    account_id: str
    region: str
    availability_zone: str
    role_name: str
    user_data: bytes
    public_key_name: str
    public_key: str

    @classmethod
    def load(cls, path):
        config = tomllib.loads(path.read_text())
        instance = config["instance"]
        public_key = instance["public-keys"][0]
        return cls(
            instance_id=instance["instance-id"],
            account_id=instance["account-id"],
            region=instance["placement"]["region"],
            availability_zone=instance["placement"]["availability-zone"],
            role_name=instance["iam"]["role-name"],
            user_data=instance["user-data"].encode("utf-8"),
            public_key_name=public_key["name"],
            public_key=public_key["openssh-key"],
        )


@dataclass(frozen=True)
class Mode:
    """One set of instance metadata options, given to `imds serve` as flags."""

    name: str
    flags: tuple
    tokens_required: bool = False
    endpoint_disabled: bool = False


MODES = [
    Mode("tokens=optional", ("--http-tokens", "optional")),
    Mode("tokens=required", ("--http-tokens", "required"), tokens_required=True),
    Mode("endpoint=disabled", ("--http-endpoint", "disabled"), endpoint_disabled=True),
]


class Namespace:
    """A network namespace whose loopback carries 169.254.169.254 (and the ECS and EKS Pod
    Identity agents' 169.254.170.2 and 169.254.170.23), so clients can use the addresses AWS
    documents without any request leaving it."""

    def __init__(self):
        self.name = f"imds-conf-{os.getpid()}"
        self.created = False
        self.error = None

    def create(self):
        try:
            for command in (
                ["ip", "netns", "add", self.name],
                ["ip", "-n", self.name, "link", "set", "lo", "up"],
                ["ip", "-n", self.name, "addr", "add", f"{LINK_LOCAL_ADDRESS}/32", "dev", "lo"],
                ["ip", "-n", self.name, "addr", "add", f"{ECS_ADDRESS}/32", "dev", "lo"],
                ["ip", "-n", self.name, "addr", "add", f"{POD_IDENTITY_ADDRESS}/32", "dev", "lo"],
            ):
                subprocess.run(command, check=True, capture_output=True, text=True)
                self.created = True
        except (OSError, subprocess.CalledProcessError) as error:
            stderr = getattr(error, "stderr", "") or ""
            self.error = f"cannot set up network namespace {self.name}: {error} {stderr.strip()}"

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.name]

    def delete(self):
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
            self.created = False


class Server:
    """A running `imds serve`; ready once it has logged its `Listening.` line."""

    def __init__(self, mode, state_dir, namespace=None):
        self.mode = mode
        self.state_dir = state_dir
        self.namespace = namespace
        self.process = None
        self.base_url = None
        self.container_url = None
        self.log_lines = []
        self.error = None
        # The audit log: which credentials path and which set (delivery) each client got.
        self.audit_path = Path(state_dir) / "audit.jsonl"
        self.audit_offset = 0

    def credential_use(self):
        """The credentials hand-outs audited since the last call, as `path delivery` phrases
        (`extended v2`, `old v1`, `container`), in the order first seen."""
        try:
            with open(self.audit_path, "rb") as audit:
                audit.seek(self.audit_offset)
                text = audit.read()
        except OSError:
            return []
        # Only whole lines: a record being written is read next time.
        text = text[: text.rfind(b"\n") + 1]
        self.audit_offset += len(text)
        seen = []
        for line in text.decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") != "credentials-issued":
                continue
            if record.get("endpoint") == "imds":
                path = {
                    "iam/security-credentials-extended": "extended",
                    "iam/security-credentials": "old",
                }.get(record.get("path"), "identity")
                delivery = {"1.0": "v1", "2.0": "v2"}.get(record.get("delivery"), "")
                phrase = f"{path} {delivery}".strip()
            else:
                phrase = record.get("endpoint", "?")
            if phrase not in seen:
                seen.append(phrase)
        return seen

    def start(self):
        listen = f"{LINK_LOCAL_ADDRESS}:80" if self.namespace else "127.0.0.1:0"
        command = [
            str(IMDS_BINARY),
            "serve",
            "--listen",
            listen,
            "--state-dir",
            str(self.state_dir),
            "--config",
            str(INSTANCE_CONFIG),
            "--audit-log",
            str(self.audit_path),
            *self.mode.flags,
        ]
        if not self.namespace:
            # The container endpoints, for the `containers` checks: loopback only, so that
            # clients are pointed at them with AWS_CONTAINER_CREDENTIALS_FULL_URI.
            command += ["--container-listen", "127.0.0.1:0"]
        else:
            # Inside the namespace, on the agents' own addresses: clients configured exactly as
            # in an ECS task (a relative URI) and an EKS pod.
            command += [
                "--container-listen",
                f"{ECS_ADDRESS}:80",
                "--pod-identity-listen",
                f"{POD_IDENTITY_ADDRESS}:80",
            ]
        if self.namespace:
            command = self.namespace.exec_prefix() + command
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
            self.base_url = "http://" + self._wait_for_listening()
        except (OSError, RuntimeError) as error:
            self.error = f"server did not start: {error}"
            self.stop()
            return
        threading.Thread(target=self._drain_log, daemon=True).start()

    def _wait_for_listening(self):
        deadline = time.monotonic() + SERVER_READY_LIMIT_S
        selector = selectors.DefaultSelector()
        selector.register(self.process.stderr, selectors.EVENT_READ)
        pending = b""
        listening = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise RuntimeError(
                    f"no Listening (or container endpoint) line within {SERVER_READY_LIMIT_S} s"
                )
            chunk = os.read(self.process.stderr.fileno(), 65536)
            if not chunk:
                log = "\n".join(self.log_lines[-5:])
                raise RuntimeError(f"exited with {self.process.wait()}: {log}")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw_line in lines:
                line = ANSI_ESCAPE.sub("", raw_line.decode("utf-8", "replace"))
                self.log_lines.append(line)
                match = LISTENING_LINE.search(line)
                if match:
                    listening = match.group(1)
                match = CONTAINER_LINE.search(line)
                if match:
                    self.container_url = "http://" + match.group(1)
                if listening and (self.namespace or self.container_url):
                    selector.close()
                    return listening

    def _drain_log(self):
        for raw_line in self.process.stderr:
            self.log_lines.append(ANSI_ESCAPE.sub("", raw_line.decode("utf-8", "replace")))

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class ClientRun:
    """What one client process did."""

    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float

    def json(self):
        """The probe's report: the last line of its output, as JSON."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            raise CheckFailed(
                f"printed nothing (exit {self.returncode}): {self.stderr.strip()[-300:]}"
            )
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError as error:
            raise CheckFailed(f"unreadable report ({error}): {lines[-1][:200]}") from None


def run_client(command, env, cwd=REPO_DIR):
    started = time.monotonic()
    try:
        completed = subprocess.run(
            [str(part) for part in command],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLIENT_RUN_LIMIT_S,
        )
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"hung: still running after {CLIENT_RUN_LIMIT_S:.0f} s") from None
    except OSError as error:
        raise CheckFailed(f"cannot run {command[0]}: {error}") from None
    return ClientRun(
        completed.returncode, completed.stdout, completed.stderr, time.monotonic() - started
    )


@dataclass
class Outcome:
    client: str
    check: str
    variant: str
    mode: str
    passed: bool
    note: str
    elapsed_s: float
    # Which credentials path and set the client got (from the servers' audit logs).
    credentials: str = ""

    def line(self):
        variant = f" {self.variant}" if self.variant else ""
        verdict = "PASS" if self.passed else "FAIL"
        reason = f" ({self.note})" if not self.passed else ""
        return (
            f"{verdict} {self.client} {self.check}{variant} {self.mode}"
            f" [{self.elapsed_s:.2f} s]{reason}"
        )


@dataclass
class Suite:
    """Everything the checks of one mode need, and the outcomes so far."""

    instance: Instance
    scratch: Path
    namespace: Namespace
    outcomes: list = field(default_factory=list)
    mode: Mode = None
    server: Server = None
    namespace_server: Server = None
    # The elapsed time of the client run recorded last, and what it was handed.
    last_run: tuple = (None, [])

    def record(self, client, check, variant, elapsed_s, judge):
        """Runs judge(), which returns a short note or raises CheckFailed, and prints the line."""
        # The hand-outs since the last record are this client's (checks run one at a time);
        # those the judge makes to learn what is served are nobody's. Several records of one
        # client run (the same elapsed time) share what that run was handed.
        used = self.credential_use()
        if not used and elapsed_s and elapsed_s == self.last_run[0]:
            used = self.last_run[1]
        self.last_run = (elapsed_s, used)
        try:
            note = judge()
            passed = True
        except CheckFailed as failure:
            note, passed = str(failure), False
        except Exception as error:  # A bug in a judge is a failure too, never a pass.
            note, passed = f"{type(error).__name__}: {error}", False
        self.settle_credential_use()
        outcome = Outcome(
            client, check, variant, self.mode.name, passed, note, elapsed_s, ", ".join(used)
        )
        self.outcomes.append(outcome)
        print(outcome.line(), flush=True)
        return outcome

    def credential_use(self):
        """What both servers' audit logs say was handed out since the last call."""
        used = []
        for server in (self.server, self.namespace_server):
            if server is not None:
                used += [phrase for phrase in server.credential_use() if phrase not in used]
        return used

    def settle_credential_use(self):
        """Reads the audit logs until they stop growing, and drops what they say: the servers
        write a record on their audit thread just after answering, so the judge's own requests
        could otherwise be read as the next client's."""
        def offsets():
            return [s.audit_offset for s in (self.server, self.namespace_server) if s is not None]

        quiet_polls = 0
        for _ in range(100):
            before = offsets()
            self.credential_use()
            quiet_polls = quiet_polls + 1 if offsets() == before else 0
            if quiet_polls == 2:
                return
            time.sleep(0.01)

    def fail(self, client, check, variant, reason):
        def judge():
            raise CheckFailed(reason)

        return self.record(client, check, variant, 0.0, judge)

    def client_env(self, endpoint=None, v1_disabled=False):
        """An environment in which only IMDS can supply credentials or a region, reached
        directly."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AWS_") and key.lower() not in PROXY_VARIABLES
        }
        home = self.scratch / "home"
        home.mkdir(exist_ok=True)
        empty = self.scratch / "empty-aws-config"
        empty.touch()
        env.update(
            HOME=str(home),
            AWS_CONFIG_FILE=str(empty),
            AWS_SHARED_CREDENTIALS_FILE=str(empty),
        )
        if endpoint:
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = endpoint
        if v1_disabled:
            env["AWS_EC2_METADATA_V1_DISABLED"] = "true"
        return env

    def served_credentials(self):
        """The credentials the loopback server is serving right now."""
        return raw_imds.current_credentials(self.server.base_url)["credentials"]

    def namespace_served_credentials(self):
        """The credentials the namespace server is serving right now."""
        run = run_client(
            self.namespace.exec_prefix()
            + [VENV_PYTHON, PROBES_DIR / "raw_imds.py", self.namespace_server.base_url],
            dict(os.environ),
        )
        return run.json()["credentials"]

    def refused_quickly(self, elapsed_s):
        expect(
            elapsed_s < CLEAN_FAILURE_LIMIT_S,
            f"gave up only after {elapsed_s:.1f} s (limit {CLEAN_FAILURE_LIMIT_S:.0f} s)",
        )


def check_botocore(suite):
    """boto3's default credential chain, InstanceMetadataFetcher, and the IMDS region lookups."""
    mode = suite.mode
    endpoint = suite.server.base_url + "/"
    for v1_variant, v1_disabled in (("v1=allowed", False), ("v1=disabled", True)):
        run = run_client(
            [VENV_PYTHON, PROBES_DIR / "botocore_probe.py", "credential-chain"],
            suite.client_env(endpoint, v1_disabled),
        )

        def judge_chain(run=run, v1_disabled=v1_disabled):
            report = run.json()
            if mode.endpoint_disabled and v1_disabled:
                # The token PUT gets 403 and IMDSv1 may not be used: botocore raises.
                expect("err" in report, f"did not raise: {shorten(report.get('ok'))}")
                expect(
                    "IMDSv1 has been disabled" in report["err"],
                    f"unexpected error: {report['err']}",
                )
                suite.refused_quickly(run.elapsed_s)
                return "MetadataRetrievalError: no token and IMDSv1 disabled"
            if mode.endpoint_disabled:
                expect(
                    "err" not in report, f"raised instead of finding nothing: {report.get('err')}"
                )
                expect_equal("credentials", report["ok"], None)
                suite.refused_quickly(run.elapsed_s)
                return "no credentials resolved"
            expect("ok" in report, f"raised {report.get('err')}")
            credentials = report["ok"]
            expect(credentials is not None, "no credentials resolved")
            served = suite.served_credentials()
            expect_equal("method", credentials["method"], "iam-role")
            expect_equal("access key", credentials["access_key"], served["AccessKeyId"])
            expect_equal("secret key", credentials["secret_key"], served["SecretAccessKey"])
            expect_equal("session token", credentials["token"], served["Token"])
            return "iam-role credentials equal the served ones"

        suite.record("botocore", "credential-chain", v1_variant, run.elapsed_s, judge_chain)

    run = run_client(
        [VENV_PYTHON, PROBES_DIR / "botocore_probe.py", "instance-metadata-fetcher"],
        suite.client_env(endpoint),
    )

    def judge_fetcher():
        report = run.json()
        expect("ok" in report, f"raised {report.get('err')}")
        if mode.endpoint_disabled:
            expect_equal("credentials", report["ok"], {})
            suite.refused_quickly(run.elapsed_s)
            return "no credentials"
        served = suite.served_credentials()
        expect_equal("role name", report["ok"].get("role_name"), suite.instance.role_name)
        expect_equal("access key", report["ok"].get("access_key"), served["AccessKeyId"])
        return "role and access key equal the served ones"

    suite.record("botocore", "InstanceMetadataFetcher", "", run.elapsed_s, judge_fetcher)

    run = run_client(
        [VENV_PYTHON, PROBES_DIR / "botocore_probe.py", "region"], suite.client_env(endpoint)
    )

    def judge_region():
        report = run.json()
        expect("ok" in report, f"raised {report.get('err')}")
        want = None if mode.endpoint_disabled else suite.instance.region
        expect_equal("InstanceMetadataRegionFetcher", report["ok"]["region_fetcher"], want)
        expect_equal("IMDSRegionProvider", report["ok"]["region_provider"], want)
        if mode.endpoint_disabled:
            suite.refused_quickly(run.elapsed_s)
            return "no region"
        return f"region {want}"

    suite.record(
        "botocore",
        "InstanceMetadataRegionFetcher+IMDSRegionProvider",
        "",
        run.elapsed_s,
        judge_region,
    )


class CaptureListener:
    """A loopback HTTP listener that stands in for the STS endpoint the CLI is pointed at: it
    records each signed request and answers GetCallerIdentity. Nothing leaves the machine."""

    RESPONSE = (
        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        "<GetCallerIdentityResult><Arn>{arn}</Arn><UserId>AROA:{instance}</UserId>"
        "<Account>{account}</Account></GetCallerIdentityResult>"
        "<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId>"
        "</ResponseMetadata></GetCallerIdentityResponse>"
    )

    def __init__(self, instance):
        self.requests = []
        listener = self
        body = self.RESPONSE.format(
            arn=f"arn:aws:sts::{instance.account_id}:assumed-role/{instance.role_name}/"
            f"{instance.instance_id}",
            instance=instance.instance_id,
            account=instance.account_id,
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                listener.requests.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def check_awscli(suite):
    """`aws configure list`, and a real signed call made with the IMDS credentials."""
    mode = suite.mode
    env = suite.client_env(suite.server.base_url + "/")
    run = run_client([AWS_CLI, "configure", "list"], env)

    def judge_list():
        expect_equal("exit status", run.returncode, 0)
        rows = {}
        for line in run.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3:
                rows[parts[0]] = parts[1:]
        expect("access_key" in rows, f"no access_key row in: {run.stdout.strip()[:200]}")
        if mode.endpoint_disabled:
            expect_equal("access_key row", rows["access_key"][:2], ["<not", "set>"])
            suite.refused_quickly(run.elapsed_s)
            return "access_key <not set>"
        served = suite.served_credentials()
        value, kind = rows["access_key"][0], rows["access_key"][1]
        expect_equal("access_key type", kind, "iam-role")
        expect_equal("access_key shown", value[-4:], served["AccessKeyId"][-4:])
        expect_equal("secret_key type", rows["secret_key"][1], "iam-role")
        expect_equal("secret_key shown", rows["secret_key"][0][-4:], served["SecretAccessKey"][-4:])
        return "iam-role, masked keys match the served ones"

    suite.record("awscli", "configure-list", "", run.elapsed_s, judge_list)

    with CaptureListener(suite.instance) as listener:
        run = run_client(
            [
                AWS_CLI,
                "sts",
                "get-caller-identity",
                "--region",
                suite.instance.region,
                "--endpoint-url",
                listener.url,
                "--output",
                "json",
            ],
            dict(env, AWS_MAX_ATTEMPTS="1"),
        )

    def judge_signed():
        if mode.endpoint_disabled:
            expect(run.returncode != 0, "succeeded without credentials")
            expect(
                "Unable to locate credentials" in run.stderr,
                f"unexpected error: {run.stderr.strip()[-200:]}",
            )
            expect_equal("signed requests sent", len(listener.requests), 0)
            suite.refused_quickly(run.elapsed_s)
            return "Unable to locate credentials"
        expect_equal("exit status", run.returncode, 0)
        expect_equal("signed requests sent", len(listener.requests), 1)
        headers = listener.requests[0]
        served = suite.served_credentials()
        authorization = headers.get("Authorization", "")
        expect(
            f"Credential={served['AccessKeyId']}/" in authorization,
            f"request not signed with the served key: {authorization[:80]}",
        )
        expect_equal("X-Amz-Security-Token", headers.get("X-Amz-Security-Token"), served["Token"])
        return "request signed with the served AccessKeyId and token"

    suite.record("awscli", "sts-get-caller-identity-signature", "", run.elapsed_s, judge_signed)


def judge_imds_credentials(suite, run, report, expiry_rule, ran_at=None):
    """Judges a client's IMDS role credentials (`report`: {"ok": {access_key_id,
    secret_access_key, session_token, expiry (epoch seconds)}} or {"err"}) against the ones the
    loopback server serves: none, quickly, with the endpoint disabled; else the same keys, and an
    expiry that is the served one (`"served"`), not compared (`None`), or the served one capped
    at `ran_at` + 1 h (`"capped"`: the Go SDK v2's ec2rolecreds keeps a set at most an hour)."""
    if suite.mode.endpoint_disabled:
        expect("err" in report, f"got credentials {shorten(report.get('ok'))}")
        suite.refused_quickly(run.elapsed_s)
        return "no credentials"
    expect("ok" in report, f"{report.get('err')}")
    served = suite.served_credentials()
    expect_same_keys(report["ok"], served)
    if expiry_rule is None:
        return "keys equal the served ones"
    expiry = datetime.datetime.fromtimestamp(report["ok"]["expiry"], datetime.timezone.utc)
    served_expiry = datetime.datetime.strptime(served["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    if expiry_rule == "served":
        expect_equal("expiry", expiry, served_expiry)
        return "credentials equal the served ones"
    want = min(served_expiry, ran_at + datetime.timedelta(hours=1))
    expect(
        abs((expiry - want).total_seconds()) <= 2 + run.elapsed_s,
        f"expiry {expiry:%H:%M:%S}, want min(served {served_expiry:%H:%M:%S}, now + 1 h)",
    )
    return "keys equal the served ones, expiry capped at 1 h"


def check_rust(suite):
    """aws-config's imds::Client and ImdsCredentialsProvider."""
    mode = suite.mode
    if not RUST_PROBE.exists():
        for check in ("imds::Client", "ImdsCredentialsProvider"):
            suite.fail("rust-sdk", check, "", f"probe not built: {RUST_PROBE}")
        return
    run = run_client([RUST_PROBE], suite.client_env(suite.server.base_url + "/"))

    def judge_client():
        report = run.json()
        if mode.endpoint_disabled:
            for name in ("instance_id", "placement_region", "user_data", "role_list"):
                expect("err" in report[name], f"{name}: got {shorten(report[name].get('ok'))}")
                expect("forbidden" in report[name]["err"].lower(), f"{name}: {report[name]['err']}")
            expect("err" in report["region_provider"], "region provider found a region")
            suite.refused_quickly(run.elapsed_s)
            return "token request forbidden (403), no retries"
        for name, want in (
            ("instance_id", suite.instance.instance_id),
            ("placement_region", suite.instance.region),
            ("user_data", suite.instance.user_data.decode("utf-8")),
            ("role_list", suite.instance.role_name),
            ("region_provider", suite.instance.region),
        ):
            expect("ok" in report[name], f"{name}: {report[name].get('err')}")
            expect_equal(name, report[name]["ok"], want)
        return "instance-id, placement/region, user-data, role, region provider"

    suite.record("rust-sdk", "imds::Client", "", run.elapsed_s, judge_client)

    def judge_credentials():
        return judge_imds_credentials(suite, run, run.json()["credentials"], "served")

    suite.record("rust-sdk", "ImdsCredentialsProvider", "", run.elapsed_s, judge_credentials)


def check_js(suite):
    """fromInstanceMetadata and MetadataService, with IMDSv1 allowed and disabled."""
    mode = suite.mode

    def run_js(check, v1_disabled):
        run = run_client(
            ["node", JS_DIR / "probe.js", check],
            suite.client_env(suite.server.base_url + "/", v1_disabled),
        )
        return run, run.json

    def judge_process(run, report):
        """Every call ends within the limit, and the process exits once its work is done."""
        for name, outcome in report["calls"].items():
            if "err" in outcome:
                expect(
                    outcome["ms"] < CLEAN_FAILURE_LIMIT_S * 1000,
                    f"{name} gave up only after {outcome['ms'] / 1000:.1f} s",
                )
        exit_lag_s = run.elapsed_s - report["reportedAtMs"] / 1000
        expect(
            exit_lag_s < EXIT_LAG_LIMIT_S,
            f"process exited {exit_lag_s:.1f} s after its last call ended",
        )

    for v1_variant, v1_disabled in (("v1=allowed", False), ("v1=disabled", True)):
        run, report = run_js("from-instance-metadata", v1_disabled)

        def judge_provider(run=run, report=report, v1_disabled=v1_disabled):
            outcome = report()["calls"]["credentials"]
            if mode.endpoint_disabled:
                expect("err" in outcome, f"got credentials {shorten(outcome.get('ok'))}")
                if v1_disabled:
                    expect(
                        "InstanceMetadataV1FallbackError" in outcome["err"],
                        f"unexpected error: {outcome['err']}",
                    )
                else:
                    expect_equal(f"status of {outcome['err']!r}", outcome["status"], 403)
                judge_process(run, report())
                return outcome["err"].split(":")[0] + ("" if v1_disabled else " (403)")
            expect("ok" in outcome, f"{outcome.get('err')}")
            judge_process(run, report())
            served = suite.served_credentials()
            got = outcome["ok"]
            expect_equal("accessKeyId", got["accessKeyId"], served["AccessKeyId"])
            expect_equal("secretAccessKey", got["secretAccessKey"], served["SecretAccessKey"])
            expect_equal("sessionToken", got["sessionToken"], served["Token"])
            expect_equal("expiration", got["expiration"], served["Expiration"][:-1] + ".000Z")
            return "credentials equal the served ones"

        suite.record("js-sdk", "fromInstanceMetadata", v1_variant, run.elapsed_s, judge_provider)

        run, report = run_js("metadata-service", v1_disabled)

        def judge_service(run=run, report=report, v1_disabled=v1_disabled):
            calls = report()["calls"]
            if mode.endpoint_disabled:
                expect("err" in calls["token"], f"got a token {shorten(calls['token'].get('ok'))}")
                expect("403" in calls["token"]["err"], f"token: {calls['token']['err']}")
                for name in ("instanceId", "region", "userData", "roleList"):
                    outcome = calls[name]
                    expect("err" in outcome, f"{name}: got {shorten(outcome.get('ok'))}")
                    if v1_disabled:
                        # After the token's 403 the client itself refuses to go on without one.
                        expect("IMDSv1 is disabled" in outcome["err"], f"{name}: {outcome['err']}")
                    else:
                        expect_equal(f"{name} status", outcome["status"], 403)
                judge_process(run, report())
                return "token 403, then " + (
                    "the client refuses IMDSv1" if v1_disabled else "403 on every request"
                )
            expect("ok" in calls["token"], f"token: {calls['token'].get('err')}")
            expect(len(calls["token"]["ok"]) > 0, "empty token")
            for name, want in (
                ("instanceId", suite.instance.instance_id),
                ("region", suite.instance.region),
                ("userData", suite.instance.user_data.decode("utf-8")),
                ("roleList", suite.instance.role_name),
            ):
                expect("ok" in calls[name], f"{name}: {calls[name].get('err')}")
                expect_equal(name, calls[name]["ok"], want)
            judge_process(run, report())
            return "token, instance-id, placement/region, user-data, role"

        suite.record("js-sdk", "MetadataService", v1_variant, run.elapsed_s, judge_service)

    run, report = run_js("metadata-service-v1-only", False)

    def judge_v1_only():
        outcome = report()["calls"]["instanceId"]
        if mode.tokens_required or mode.endpoint_disabled:
            want_status = 403 if mode.endpoint_disabled else 401
            expect("err" in outcome, f"served without a token: {shorten(outcome.get('ok'))}")
            expect_equal("status", outcome.get("status"), want_status)
            judge_process(run, report())
            return f"refused with {want_status}, as on AWS"
        expect("ok" in outcome, f"{outcome.get('err')}")
        expect_equal("instance-id", outcome["ok"], suite.instance.instance_id)
        judge_process(run, report())
        return "IMDSv1 instance-id"

    suite.record("js-sdk", "MetadataService(disableFetchToken)", "", run.elapsed_s, judge_v1_only)


def check_go(suite):
    """The Go SDKs: v2's feature/ec2/imds client, ec2rolecreds and the default chain with
    config.WithEC2IMDSRegion; v1's ec2metadata client, ec2rolecreds and the session's chain."""
    mode = suite.mode
    calls = {
        "v2": (
            "v2_instance_id",
            "v2_placement_region",
            "v2_user_data",
            "v2_role_list",
            "v2_region",
            "v2_identity_document",
            "v2_iam_info",
            "v2_config_region",
        ),
        "v1": ("v1_instance_id", "v1_region", "v1_user_data", "v1_identity_document"),
    }
    if not GO_PROBE.exists():
        for check in ("imds.Client", "ec2rolecreds", "ec2metadata", "v1 ec2rolecreds"):
            suite.fail("go-sdk", check, "", f"probe not built: {GO_PROBE}")
        return
    ran_at = datetime.datetime.now(datetime.timezone.utc)
    run = run_client([GO_PROBE], suite.client_env(suite.server.base_url + "/"))

    def judge_metadata(version):
        report = run.json()
        if mode.endpoint_disabled:
            for name in calls[version]:
                expect("err" in report[name], f"{name}: got {shorten(report[name].get('ok'))}")
                expect("403" in report[name]["err"], f"{name}: {report[name]['err']}")
            suite.refused_quickly(run.elapsed_s)
            return "every call refused with 403"
        document = {
            "instance_id": suite.instance.instance_id,
            "region": suite.instance.region,
            "availability_zone": suite.instance.availability_zone,
            "account_id": suite.instance.account_id,
        }
        wants = {
            "v2_instance_id": suite.instance.instance_id,
            "v2_placement_region": suite.instance.region,
            "v2_user_data": suite.instance.user_data.decode("utf-8"),
            "v2_role_list": suite.instance.role_name,
            "v2_region": suite.instance.region,
            "v2_identity_document": document,
            # The instance profile is named for its role when the config names none.
            "v2_iam_info": (
                f"arn:aws:iam::{suite.instance.account_id}:instance-profile/"
                f"{suite.instance.role_name}"
            ),
            "v2_config_region": suite.instance.region,
            "v1_instance_id": suite.instance.instance_id,
            "v1_region": suite.instance.region,
            "v1_user_data": suite.instance.user_data.decode("utf-8"),
            "v1_identity_document": document,
        }
        for name in calls[version]:
            expect("ok" in report[name], f"{name}: {report[name].get('err')}")
            expect_equal(name, report[name]["ok"], wants[name])
        if version == "v2":
            return "instance-id, placement/region, user-data, role, region, identity, IAM info"
        return "instance-id, region, user-data, identity document"

    def judge_credentials(name, expiry_rule):
        return judge_imds_credentials(suite, run, run.json()[name], expiry_rule, ran_at)

    suite.record("go-sdk", "v2 imds.Client", "", run.elapsed_s, lambda: judge_metadata("v2"))
    suite.record(
        "go-sdk",
        "v2 ec2rolecreds",
        "",
        run.elapsed_s,
        lambda: judge_credentials("v2_ec2rolecreds", "capped"),
    )
    suite.record(
        "go-sdk",
        "v2 default chain",
        "",
        run.elapsed_s,
        lambda: judge_credentials("v2_default_chain", "capped"),
    )
    suite.record("go-sdk", "v1 ec2metadata", "", run.elapsed_s, lambda: judge_metadata("v1"))
    suite.record(
        "go-sdk",
        "v1 ec2rolecreds",
        "",
        run.elapsed_s,
        lambda: judge_credentials("v1_ec2rolecreds", "served"),
    )
    suite.record(
        "go-sdk",
        "v1 default chain",
        "",
        run.elapsed_s,
        lambda: judge_credentials("v1_default_chain", None),
    )


def fetch_container_credentials(url, token=None):
    """The credentials document the container endpoint serves at url, fetched directly."""
    request = urllib.request.Request(url, headers={"Authorization": token} if token else {})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def judge_botocore_container(run, want):
    """botocore's `credential-chain` report against the document the endpoint serves."""
    report = run.json()
    expect("ok" in report and report["ok"], f"no credentials: {report.get('err')}")
    expect_equal("method", report["ok"]["method"], "container-role")
    expect_same_keys(report["ok"], want, ("access_key", "secret_key", "token"))
    return "container-role credentials equal the served ones"


def judge_rust_container(run, want):
    """The Rust probe's `container` report against the document the endpoint serves."""
    report = run.json()["credentials"]
    expect("ok" in report, f"{report.get('err')}")
    expect_same_keys(report["ok"], want, ("access_key_id", "secret_access_key", "session_token"))
    expiry = datetime.datetime.fromtimestamp(report["ok"]["expiry"], datetime.timezone.utc)
    expect_equal("expiry", expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), want["Expiration"])
    return "credentials equal the served ones"


def check_container_agents(suite):
    """The container providers configured exactly as in an ECS task and an EKS pod, inside the
    namespace where the server listens on the agents' addresses: ECS's relative URI (botocore,
    the Rust SDK), and EKS Pod Identity's full URI with a service-account token file (botocore,
    the JavaScript SDK's fromHttp, the Rust SDK), the token minted with the server's own key
    by `imds container-env`."""
    server = suite.namespace_server
    if server is None:
        reason = suite.namespace.error or "no network namespace"
        suite.fail("containers", "ECS and EKS agents' addresses", "", reason)
        return
    config = tomllib.loads(INSTANCE_CONFIG.read_text())
    task = config["tasks"][0]
    association = config["pod-identity-associations"][0]
    token_file = suite.scratch / f"pod-identity-token-{suite.mode.name}"
    minted = subprocess.run(
        [
            str(IMDS_BINARY),
            "container-env",
            "--pod-identity",
            "--namespace",
            association["namespace"],
            "--service-account",
            association["service-account"],
            "--token-file",
            str(token_file),
            "--state-dir",
            str(server.state_dir),
        ],
        capture_output=True,
        text=True,
    )
    if minted.returncode != 0:
        suite.fail("containers", "EKS Pod Identity", "", f"no token: {minted.stderr.strip()}")
        return
    pod_env = dict(
        line.split("=", 1) for line in minted.stdout.splitlines() if "=" in line
    )
    relative_uri = f"/v2/credentials/{task['credentials-id']}"

    def served(uri, token=None):
        run = run_client(
            suite.namespace.exec_prefix()
            + [VENV_PYTHON, PROBES_DIR / "raw_imds.py", "--container", uri]
            + ([token] if token else []),
            dict(os.environ),
        )
        return run.json()

    def env(variables):
        # No IMDS endpoint variable: the namespace's 169.254.169.254 is the only IMDS there.
        environment = suite.client_env()
        environment.update(variables)
        return environment

    variants = (
        (
            "relative-uri",
            {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": relative_uri},
            f"http://{ECS_ADDRESS}{relative_uri}",
            None,
        ),
        ("pod-identity", pod_env, pod_env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""), True),
    )
    in_namespace = suite.namespace.exec_prefix()
    for variant, variables, uri, with_token in variants:
        want_token = token_file.read_text() if with_token else None
        run = run_client(
            in_namespace + [VENV_PYTHON, PROBES_DIR / "botocore_probe.py", "credential-chain"],
            env(variables),
        )

        def judge_botocore(run=run, uri=uri, want_token=want_token):
            return judge_botocore_container(run, served(uri, want_token))

        suite.record("botocore", "container-provider", variant, run.elapsed_s, judge_botocore)

        if RUST_PROBE.exists():
            run = run_client(in_namespace + [RUST_PROBE, "container"], env(variables))

            def judge_rust(run=run, uri=uri, want_token=want_token):
                return judge_rust_container(run, served(uri, want_token))

            suite.record("rust-sdk", "EcsCredentialsProvider", variant, run.elapsed_s, judge_rust)

        if with_token:
            run = run_client(
                in_namespace + ["node", JS_DIR / "probe.js", "from-http"],
                env(variables),
                cwd=JS_DIR,
            )

            def judge_js(run=run, uri=uri, want_token=want_token):
                report = run.json()["calls"]["credentials"]
                expect("ok" in report, f"{report.get('err')}")
                expect_same_keys(
                    report["ok"],
                    served(uri, want_token),
                    ("accessKeyId", "secretAccessKey", "sessionToken"),
                )
                return "credentials equal the served ones"

            suite.record("js-sdk", "fromHttp", variant, run.elapsed_s, judge_js)


def check_containers(suite):
    """The container credential providers (botocore, the JavaScript SDK's fromContainerMetadata
    and fromHttp, the Go SDKs' default chains) on AWS_CONTAINER_CREDENTIALS_FULL_URI, with the
    token in a variable and in a file, on a `[[container-credentials]]` route and on the ECS
    task's credentials route; and OpenTelemetry's ECS resource detector on the task metadata
    endpoint v4. The container endpoints do not depend on the instance's metadata options, so
    every mode must give the same answers."""
    config = tomllib.loads(INSTANCE_CONFIG.read_text())
    route = config["container-credentials"][0]
    task = config["tasks"][0]
    base = suite.server.container_url
    if not base:
        suite.fail("containers", "all checks", "", "the server logged no container endpoint")
        return
    route_uri = base + route["path"]
    task_uri = f"{base}/v2/credentials/{task['credentials-id']}"
    token_file = suite.scratch / "container-token"
    # No newline: the SDKs send the file's bytes as they are (as EKS writes its token file).
    token_file.write_text(route["authorization-token"])
    imds_endpoint = suite.server.base_url + "/"

    def env(full_uri, token=None, token_file_path=None):
        # IMDS stays pointed at the loopback server, so that no fallback can leave the machine.
        variables = suite.client_env(imds_endpoint)
        variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = full_uri
        if token:
            variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
        if token_file_path:
            variables["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(token_file_path)
        return variables

    def served(uri, token):
        return fetch_container_credentials(uri, token)

    variants = (
        ("route+token", route_uri, route["authorization-token"], None),
        ("route+token-file", route_uri, None, token_file),
        ("task", task_uri, None, None),
    )
    for variant, uri, token, token_path in variants:
        want_token = route["authorization-token"] if uri == route_uri else None
        run = run_client(
            [VENV_PYTHON, PROBES_DIR / "botocore_probe.py", "credential-chain"],
            env(uri, token, token_path),
        )

        def judge_botocore(run=run, uri=uri, want_token=want_token):
            return judge_botocore_container(run, served(uri, want_token))

        suite.record("botocore", "container-provider", variant, run.elapsed_s, judge_botocore)

        for check, name in (
            ("from-container-metadata", "fromContainerMetadata"),
            ("from-http", "fromHttp"),
        ):
            if check == "from-container-metadata" and token_path:
                continue  # fromContainerMetadata reads no token file.
            run = run_client(
                ["node", JS_DIR / "probe.js", check], env(uri, token, token_path), cwd=JS_DIR
            )

            def judge_js(run=run, uri=uri, want_token=want_token):
                report = run.json()["calls"]["credentials"]
                expect("ok" in report, f"{report.get('err')}")
                want = served(uri, want_token)
                expect_same_keys(
                    report["ok"], want, ("accessKeyId", "secretAccessKey", "sessionToken")
                )
                expiry = datetime.datetime.fromisoformat(
                    report["ok"]["expiration"].replace("Z", "+00:00")
                )
                expect_equal("expiry", expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), want["Expiration"])
                return "credentials equal the served ones"

            suite.record("js-sdk", name, variant, run.elapsed_s, judge_js)

        if RUST_PROBE.exists():
            run = run_client([RUST_PROBE, "container"], env(uri, token, token_path))

            def judge_rust(run=run, uri=uri, want_token=want_token):
                return judge_rust_container(run, served(uri, want_token))

            suite.record("rust-sdk", "EcsCredentialsProvider", variant, run.elapsed_s, judge_rust)

        if GO_PROBE.exists() and not token_path:
            run = run_client([GO_PROBE, "container"], env(uri, token))

            def judge_go(run=run, uri=uri, want_token=want_token):
                report = run.json()
                want = served(uri, want_token)
                for chain in ("v2_default_chain", "v1_default_chain"):
                    expect("ok" in report[chain], f"{chain}: {report[chain].get('err')}")
                    expect_same_keys(
                        report[chain]["ok"],
                        want,
                        ("access_key_id", "secret_access_key", "session_token"),
                    )
                return "v2 and v1 default chains: keys equal the served ones"

            suite.record("go-sdk", "container default chains", variant, run.elapsed_s, judge_go)

    # A wrong token is refused with the ECS agent's 403, and the provider says so.
    run = run_client(
        ["node", JS_DIR / "probe.js", "from-http"], env(route_uri, "not-the-token"), cwd=JS_DIR
    )

    def judge_wrong_token():
        report = run.json()["calls"]["credentials"]
        expect("err" in report, f"got credentials {shorten(report.get('ok'))}")
        expect("403" in report["err"], report["err"])
        suite.refused_quickly(run.elapsed_s)
        return "refused: 403"

    suite.record("js-sdk", "fromHttp", "wrong token", run.elapsed_s, judge_wrong_token)

    container = task["containers"][0]
    otel_env = suite.client_env(imds_endpoint)
    otel_env["ECS_CONTAINER_METADATA_URI_V4"] = f"{base}/v4/{container['endpoint-id']}"
    def judge_otel(report):
        expect("ok" in report, f"{report.get('err')}")
        attributes = report["ok"]
        # The task runs in the host instance's region and account (conformance/instance.toml).
        region, account = suite.instance.region, suite.instance.account_id
        prefix = f"arn:aws:ecs:{region}:{account}"
        expect_equal("cloud.platform", attributes.get("cloud.platform"), "aws_ecs")
        expect_equal(
            "aws.ecs.cluster.arn",
            attributes.get("aws.ecs.cluster.arn"),
            f"{prefix}:cluster/{task['cluster']}",
        )
        expect_equal(
            "aws.ecs.task.arn",
            attributes.get("aws.ecs.task.arn"),
            f"{prefix}:task/{task['cluster']}/{task['task-id']}",
        )
        container_arn = attributes.get("aws.ecs.container.arn", "")
        expect(
            re.fullmatch(
                rf"{re.escape(prefix)}:container/{task['cluster']}/{task['task-id']}/"
                r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                container_arn,
            ),
            f"aws.ecs.container.arn {container_arn!r}",
        )
        expect_equal("aws.ecs.launchtype", attributes.get("aws.ecs.launchtype"), "ec2")
        expect_equal("aws.ecs.task.family", attributes.get("aws.ecs.task.family"), task["family"])
        expect_equal(
            "aws.ecs.task.revision", attributes.get("aws.ecs.task.revision"), str(task["revision"])
        )
        options = container["log-options"]
        expect_equal(
            "aws.log.group.names", attributes.get("aws.log.group.names"), [options["awslogs-group"]]
        )
        expect_equal(
            "aws.log.group.arns",
            attributes.get("aws.log.group.arns"),
            [
                f"arn:aws:logs:{options['awslogs-region']}:{account}:log-group:{options['awslogs-group']}"
            ],
        )
        expect_equal(
            "aws.log.stream.names",
            attributes.get("aws.log.stream.names"),
            [options["awslogs-stream"]],
        )
        return (
            "cluster, task and container ARNs, launch type, family, revision, log group and stream"
        )

    # The Python and the JavaScript detectors read the same two documents.
    run = run_client([VENV_PYTHON, PROBES_DIR / "otel_ecs_probe.py"], otel_env)
    suite.record(
        "otel-python",
        "AwsEcsResourceDetector",
        "",
        run.elapsed_s,
        lambda: judge_otel(run.json()["resource"]),
    )
    js_run = run_client(["node", JS_DIR / "probe.js", "otel-ecs-detector"], otel_env, cwd=JS_DIR)
    suite.record(
        "otel-js",
        "awsEcsDetector",
        "",
        js_run.elapsed_s,
        lambda: judge_otel(js_run.json()["calls"]["resource"]),
    )


def check_ec2_metadata(suite):
    """The ec2-metadata library, unmodified, at its built-in address inside the namespace."""
    mode = suite.mode
    if not suite.namespace_server or suite.namespace_server.error:
        reason = suite.namespace.error or (
            suite.namespace_server.error if suite.namespace_server else "no namespace server"
        )
        suite.fail("ec2-metadata", "EC2Metadata", "", reason)
        return
    run = run_client(
        suite.namespace.exec_prefix() + [VENV_PYTHON, PROBES_DIR / "ec2_metadata_probe.py"],
        suite.client_env(),
    )

    def judge():
        report = run.json()
        expect_equal("service_url", report["service_url"], f"http://{LINK_LOCAL_ADDRESS}/latest/")
        attributes = [key for key, value in report.items() if isinstance(value, dict)]
        if mode.endpoint_disabled:
            for name in attributes:
                expect("err" in report[name], f"{name}: got {shorten(report[name].get('ok'))}")
                expect("403" in report[name]["err"], f"{name}: {report[name]['err']}")
            suite.refused_quickly(run.elapsed_s)
            return "token request refused with 403"
        for name in attributes:
            expect("ok" in report[name], f"{name}: {report[name].get('err')}")
        served = suite.namespace_served_credentials()
        expect_equal("instance_id", report["instance_id"]["ok"], suite.instance.instance_id)
        expect_equal("region", report["region"]["ok"], suite.instance.region)
        expect_equal(
            "availability_zone", report["availability_zone"]["ok"], suite.instance.availability_zone
        )
        expect_equal("account_id", report["account_id"]["ok"], suite.instance.account_id)
        expect_equal(
            "instance_profile_name", report["instance_profile_name"]["ok"], suite.instance.role_name
        )
        expect_equal(
            "AccessKeyId",
            report["iam_security_credentials"]["ok"]["AccessKeyId"],
            served["AccessKeyId"],
        )
        expect_equal(
            "user_data",
            base64.b64decode(report["user_data"]["ok"]["base64"]),
            suite.instance.user_data,
        )
        return "instance id, region, zone, account, profile, credentials, user-data"

    suite.record("ec2-metadata", "EC2Metadata", "", run.elapsed_s, judge)


def check_cloud_init(suite):
    """Debian's cloud-init EC2 datasource, identified as AWS (IMDSv2) and as elsewhere (IMDSv1)."""
    mode = suite.mode
    instance = suite.instance
    for platform, variant in (("aws", "platform=aws"), ("other", "platform=other")):
        scratch = Path(tempfile.mkdtemp(prefix=f"cloud-init-{platform}-", dir=suite.scratch))
        run = run_client(
            [
                DEBIAN_PYTHON,
                PROBES_DIR / "cloudinit_probe.py",
                "--url",
                suite.server.base_url,
                "--platform",
                platform,
                "--scratch",
                scratch,
                "--max-wait",
                str(CLOUD_INIT_MAX_WAIT_S),
            ],
            suite.client_env(),
        )

        def judge(run=run, platform=platform):
            report = run.json()
            v1_only = platform != "aws"
            expect_equal(
                "cloud name", report["cloud_name"], "aws" if platform == "aws" else "unknown"
            )
            expect_equal(
                "default API version", report["default_api_version"], CLOUD_INIT_API_VERSION
            )
            if mode.endpoint_disabled or (mode.tokens_required and v1_only):
                status = 403 if mode.endpoint_disabled else 401
                expect(not report["found"], "found the datasource")
                expect(
                    f"[{status}]" in run.stderr,
                    f"no {status} in its log: {run.stderr.strip()[-300:]}",
                )
                if status == 403 and not v1_only:
                    expect(
                        "HTTP endpoint is disabled. Aborting." in run.stderr,
                        f"did not abort: {run.stderr.strip()[-300:]}",
                    )
                suite.refused_quickly(run.elapsed_s)
                if status == 403 and not v1_only:
                    return "token request 403: endpoint disabled, datasource not found"
                return f"{status} until max_wait ({CLOUD_INIT_MAX_WAIT_S} s), datasource not found"
            expect(
                report["found"],
                f"datasource not found: {report['error'] or run.stderr.strip()[-300:]}",
            )
            expect_equal("API version", report["api_version"], CLOUD_INIT_API_VERSION)
            expect_equal("used a token", report["used_token"], not v1_only)
            expect_equal("instance id", report["instance_id"], instance.instance_id)
            expect_equal(
                "availability zone", report["availability_zone"], instance.availability_zone
            )
            expect_equal("region", report["region"], instance.region)
            expect_equal("public keys", report["public_ssh_keys"], [instance.public_key])
            meta_data = report["meta_data"]
            expect_equal("meta-data instance-id", meta_data["instance-id"], instance.instance_id)
            expect_equal(
                "meta-data placement/region", meta_data["placement"]["region"], instance.region
            )
            expect_equal(
                "meta-data public-keys",
                meta_data["public-keys"],
                {instance.public_key_name: instance.public_key},
            )
            expect_equal(
                "user-data", base64.b64decode(report["user_data"]["base64"]), instance.user_data
            )
            helper = report["helper_crawl"]
            expect_equal(
                "helper meta-data instance-id",
                helper["meta_data_instance_id"],
                instance.instance_id,
            )
            expect_equal(
                "helper user-data",
                base64.b64decode(helper["user_data"]["base64"]),
                instance.user_data,
            )
            expect_equal(
                "helper identity instanceId", helper["identity_instance_id"], instance.instance_id
            )
            if v1_only:
                expect_equal("dynamic data crawled", report["dynamic"], None)
                return f"IMDSv1 crawl of {CLOUD_INIT_API_VERSION}: meta-data, user-data"
            document = report["dynamic"]["instance-identity"]["document"]
            expect_equal("identity instanceId", document["instanceId"], instance.instance_id)
            expect_equal("identity region", document["region"], instance.region)
            expect_equal("identity accountId", document["accountId"], instance.account_id)
            expect_equal(
                "identity availabilityZone",
                document["availabilityZone"],
                instance.availability_zone,
            )
            return f"IMDSv2 crawl of {CLOUD_INIT_API_VERSION}: meta-data, user-data, identity"

        suite.record("cloud-init", "DataSourceEc2", variant, run.elapsed_s, judge)
        if platform == "aws":
            check_cloud_init_export(suite, scratch)


# What cloud-init's instance-data.json holds about the machine it runs on rather than its
# metadata, which `imds capture --format cloud-init` cannot know and leaves out; and `ds._doc`,
# cloud-init's own note in the file.
CLOUD_INIT_HOST_KEYS = ("merged_cfg", "sys_info")
CLOUD_INIT_V1_HOST_KEYS = (
    "distro",
    "distro_release",
    "distro_version",
    "kernel_release",
    "machine",
    "python_version",
    "system_platform",
    "variant",
)
# Documents dated by the credentials they describe: the two walks may straddle a refresh.
CREDENTIAL_DATED = (("iam", "info"), ("identity-credentials", "ec2", "info"))


def cloud_init_dumps(value):
    """cloud-init's util.json_dumps, with the line feed write_json adds."""
    return json.dumps(value, indent=1, sort_keys=True, separators=(",", ": ")) + "\n"


def without_credential_dates(data):
    meta_data = data.get("ds", {}).get("meta-data", {})
    for path in CREDENTIAL_DATED:
        node = meta_data
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop("LastUpdated", None)
    return data


def check_cloud_init_export(suite, scratch):
    """`imds capture --format cloud-init` writes what cloud-init's DataSourceEc2 wrote."""
    run = run_client(
        [
            IMDS_BINARY,
            "capture",
            "--format",
            "cloud-init",
            "--endpoint",
            suite.server.base_url,
            "--api-version",
            CLOUD_INIT_API_VERSION,
        ],
        suite.client_env(),
    )

    def judge():
        if suite.mode.endpoint_disabled:
            expect(run.returncode == 1, f"exit {run.returncode}, expected 1")
            expect("403 Forbidden" in run.stderr, f"no 403 in: {run.stderr.strip()[-300:]}")
            return "token request 403: exit 1, as cloud-init finds no datasource"
        expect(run.returncode == 0, f"exit {run.returncode}: {run.stderr.strip()[-300:]}")
        written = scratch / "run-cloud-init" / "instance-data.json"
        expect(written.exists(), f"cloud-init wrote no {written.name}")
        theirs = json.loads(written.read_text())
        for key in CLOUD_INIT_HOST_KEYS:
            theirs.pop(key, None)
        for key in CLOUD_INIT_V1_HOST_KEYS:
            theirs["v1"].pop(key, None)
        theirs["ds"].pop("_doc", None)
        theirs["sensitive_keys"] = [
            key for key in theirs["sensitive_keys"] if key not in CLOUD_INIT_HOST_KEYS
        ]
        ours = json.loads(run.stdout)
        expect_equal("layout", run.stdout, cloud_init_dumps(ours))
        ours, theirs = without_credential_dates(ours), without_credential_dates(theirs)
        for key in sorted(set(ours) | set(theirs)):
            expect_equal(key, ours.get(key), theirs.get(key))
        expect_equal("file", cloud_init_dumps(ours), cloud_init_dumps(theirs))
        return "ds, v1, base64_encoded_keys as cloud-init writes them, host keys aside"

    suite.record(
        "cloud-init",
        "instance-data.json",
        "= imds capture --format cloud-init",
        run.elapsed_s,
        judge,
    )


# The commands of AWS's "Retrieve instance metadata" and "Retrieve security credentials from
# instance metadata" pages, verbatim but for the role name.
CURL_V2_LISTING = (
    'TOKEN=`curl -X PUT "http://169.254.169.254/latest/api/token" '
    '-H "X-aws-ec2-metadata-token-ttl-seconds: 21600"` \\\n'
    '&& curl -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/'
)
CURL_V2_CREDENTIALS = (
    'TOKEN=`curl -X PUT "http://169.254.169.254/latest/api/token" '
    '-H "X-aws-ec2-metadata-token-ttl-seconds: 21600"` \\\n'
    '&& curl -H "X-aws-ec2-metadata-token: $TOKEN" '
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/{role}"
)
CURL_V2_INSTANCE_ID = (
    'TOKEN=`curl -X PUT "http://169.254.169.254/latest/api/token" '
    '-H "X-aws-ec2-metadata-token-ttl-seconds: 21600"` \\\n'
    '&& curl -H "X-aws-ec2-metadata-token: $TOKEN" '
    "http://169.254.169.254/latest/meta-data/instance-id"
)
CURL_V1_LISTING = "curl http://169.254.169.254/latest/meta-data/"
CURL_V1_INSTANCE_ID = "curl http://169.254.169.254/latest/meta-data/instance-id"
# The same requests again, printing only the status codes (not part of AWS's text).
CURL_V2_STATUS = (
    'echo "token=`curl -s -o /dev/null -w "%{http_code}" -X PUT '
    '"http://169.254.169.254/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 21600"`"\n'
    'TOKEN=`curl -s -X PUT "http://169.254.169.254/latest/api/token" '
    '-H "X-aws-ec2-metadata-token-ttl-seconds: 21600"`\n'
    'echo "get=`curl -s -o /dev/null -w "%{http_code}" -H "X-aws-ec2-metadata-token: $TOKEN" '
    'http://169.254.169.254/latest/meta-data/`"'
)
CURL_V1_STATUS = (
    'echo "get=`curl -s -o /dev/null -w "%{http_code}" http://169.254.169.254/latest/meta-data/`"'
)


def check_curl(suite):
    """AWS's documented curl commands, run verbatim against 169.254.169.254 in the namespace."""
    mode = suite.mode
    if not suite.namespace_server or suite.namespace_server.error:
        reason = suite.namespace.error or (
            suite.namespace_server.error if suite.namespace_server else "no namespace server"
        )
        suite.fail("curl", "IMDSv2-documented", "", reason)
        suite.fail("curl", "IMDSv1-documented", "", reason)
        return

    def shell(script):
        return run_client(
            suite.namespace.exec_prefix() + ["bash", "-c", script], suite.client_env()
        )

    def statuses(run):
        return dict(item.split("=", 1) for item in run.stdout.split() if "=" in item)

    listing = shell(CURL_V2_LISTING)
    credentials = shell(CURL_V2_CREDENTIALS.format(role=suite.instance.role_name))
    instance_id = shell(CURL_V2_INSTANCE_ID)
    status = shell(CURL_V2_STATUS)
    elapsed = listing.elapsed_s + credentials.elapsed_s + instance_id.elapsed_s

    def judge_v2():
        codes = statuses(status)
        if mode.endpoint_disabled:
            expect_equal("token PUT status", codes.get("token"), "403")
            expect_equal("GET status", codes.get("get"), "403")
            suite.refused_quickly(elapsed)
            return "403 on the token PUT and the GET"
        expect_equal("token PUT status", codes.get("token"), "200")
        expect_equal("GET status", codes.get("get"), "200")
        expect_equal("exit status", listing.returncode, 0)
        entries = listing.stdout.split("\n")
        for entry in ("instance-id", "iam/", "placement/", "public-keys/"):
            expect(entry in entries, f"meta-data/ listing lacks {entry}: {shorten(listing.stdout)}")
        expect_equal("instance-id", instance_id.stdout, suite.instance.instance_id)
        served = suite.namespace_served_credentials()
        got = json.loads(credentials.stdout)
        expect_equal("AccessKeyId", got.get("AccessKeyId"), served["AccessKeyId"])
        expect_equal("Code", got.get("Code"), "Success")
        return "token, meta-data/ listing, instance-id, role credentials"

    suite.record("curl", "IMDSv2-documented", "", elapsed, judge_v2)

    listing = shell(CURL_V1_LISTING)
    instance_id = shell(CURL_V1_INSTANCE_ID)
    status = shell(CURL_V1_STATUS)

    def judge_v1():
        code = statuses(status).get("get")
        if mode.endpoint_disabled or mode.tokens_required:
            want = "403" if mode.endpoint_disabled else "401"
            expect_equal("status", code, want)
            expect("instance-id" not in listing.stdout.split("\n"), "listing served without token")
            expect(suite.instance.instance_id not in instance_id.stdout, "served without token")
            suite.refused_quickly(listing.elapsed_s)
            return f"{want}, as on AWS"
        expect_equal("status", code, "200")
        expect("instance-id" in listing.stdout.split("\n"), f"listing: {shorten(listing.stdout)}")
        expect_equal("instance-id", instance_id.stdout, suite.instance.instance_id)
        return "meta-data/ listing and instance-id without a token"

    suite.record("curl", "IMDSv1-documented", "", listing.elapsed_s, judge_v1)


CHECKS = [
    ("botocore", check_botocore),
    ("awscli", check_awscli),
    ("rust-sdk", check_rust),
    ("js-sdk", check_js),
    ("go-sdk", check_go),
    ("containers", check_containers),
    ("container-agents", check_container_agents),
    ("ec2-metadata", check_ec2_metadata),
    ("cloud-init", check_cloud_init),
    ("curl", check_curl),
]


def build_rust_probe(scratch):
    """Builds the Rust probe (a no-op when it is up to date); returns (seconds, error or None)."""
    log = scratch / "rust-build.log"
    started = time.monotonic()
    with log.open("w") as log_file:
        completed = subprocess.run(
            [
                "cargo",
                "build",
                "--release",
                "--locked",
                "--manifest-path",
                str(RUST_MANIFEST),
                "--target-dir",
                str(RUST_TARGET_DIR),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_DIR,
        )
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        tail = log.read_text()[-600:]
        return elapsed, f"cargo build failed: {tail}"
    return elapsed, None


def build_go_probe(scratch):
    """Builds the Go probe in GOPATH mode from Debian's SDK sources; returns (seconds, error or
    None)."""
    log = scratch / "go-build.log"
    GO_PROBE.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GO_PATH), GOFLAGS="")
    env.setdefault("GOCACHE", str(CONFORMANCE_DIR / "go" / "target" / "cache"))
    started = time.monotonic()
    with log.open("w") as log_file:
        try:
            completed = subprocess.run(
                ["go", "build", "-o", str(GO_PROBE), "."],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=GO_PROBE_DIR,
                env=env,
            )
        except OSError as error:
            return time.monotonic() - started, f"go build could not start: {error}"
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        tail = log.read_text()[-600:]
        return elapsed, f"go build failed: {tail}"
    return elapsed, None


def command_output(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def collect_versions():
    """The version of each client that ran, read from what is installed."""

    def python_package(name):
        try:
            return package_version(name)
        except Exception:
            return "not installed"

    def debian_package(name):
        return command_output(["dpkg-query", "-W", "-f", "${Version}", name]) or "not installed"

    def cargo_lock(name):
        lock = CONFORMANCE_DIR / "rust" / "Cargo.lock"
        match = re.search(rf'name = "{name}"\nversion = "([^"]+)"', lock.read_text())
        return match.group(1) if match else "?"

    def npm_package(name):
        manifest = JS_DIR / "node_modules" / name / "package.json"
        try:
            return json.loads(manifest.read_text())["version"]
        except OSError:
            return "not installed"

    aws_cli_version = command_output([str(AWS_CLI), "--version"]).split()
    bundled_botocore = next(
        (part.split("/")[1] for part in aws_cli_version if part.startswith("botocore/")), "?"
    )
    return {
        "botocore": f"boto3 {python_package('boto3')}, botocore {python_package('botocore')}",
        "awscli": f"awscli {python_package('awscli')} (bundled botocore {bundled_botocore})",
        "rust-sdk": f"aws-config {cargo_lock('aws-config')}",
        "go-sdk": (
            f"aws-sdk-go-v2 {debian_package('golang-github-aws-aws-sdk-go-v2-dev')}, "
            f"aws-sdk-go {debian_package('golang-github-aws-aws-sdk-go-dev')} (Debian)"
        ),
        "js-sdk": (
            f"@smithy/credential-provider-imds {npm_package('@smithy/credential-provider-imds')}, "
            f"@aws-sdk/ec2-metadata-service {npm_package('@aws-sdk/ec2-metadata-service')}, "
            f"@aws-sdk/credential-provider-http {npm_package('@aws-sdk/credential-provider-http')}"
        ),
        "ec2-metadata": f"ec2-metadata {python_package('ec2-metadata')}",
        "otel-python": (
            f"opentelemetry-sdk-extension-aws {python_package('opentelemetry-sdk-extension-aws')}"
        ),
        "otel-js": (
            f"@opentelemetry/resource-detector-aws"
            f" {npm_package('@opentelemetry/resource-detector-aws')}"
        ),
        "cloud-init": f"cloud-init {debian_package('cloud-init')} (Debian)",
        "curl": f"curl {debian_package('curl')} (Debian), iproute2 {debian_package('iproute2')}",
    }


def write_results(outcomes, versions, rust_build_s, rust_build_error, total_s):
    rows = {}
    for outcome in outcomes:
        key = (outcome.client, outcome.check, outcome.variant)
        rows.setdefault(key, {})[outcome.mode] = outcome
    passed = sum(outcome.passed for outcome in outcomes)
    failed = len(outcomes) - passed
    imds_version = command_output([str(IMDS_BINARY), "--version"])
    lines = [
        "# Real-client conformance results",
        "",
        "Generated by `conformance/run`; do not edit by hand.",
        f"Run on {datetime.date.today().isoformat()} against `{imds_version}`"
        f" (`target/release/imds`, configured by `conformance/instance.toml`):"
        f" **{passed} passed, {failed} failed** in {total_s:.0f} s.",
        "",
        "Each cell is one client run against a fresh server in that mode, with the time the"
        " client took.",
        "PASS in `tokens=optional` and for IMDSv2 clients in `tokens=required` means the client"
        " reported exactly the configured values and the credentials the server was serving.",
        "PASS where AWS refuses the client (`endpoint=disabled`; IMDSv1-only clients under"
        " `tokens=required`) means it failed the way it fails on AWS, with the status AWS"
        f" sends, within {CLEAN_FAILURE_LIMIT_S:.0f} s.",
        "",
        "| Client | Version | Check | " + " | ".join(mode.name for mode in MODES) + " |",
        "|---|---|---|" + "---|" * len(MODES),
    ]
    for (client, check, variant), by_mode in rows.items():
        cells = []
        for mode in MODES:
            outcome = by_mode.get(mode.name)
            if outcome is None:
                cells.append("not run")
            else:
                verdict = "PASS" if outcome.passed else "**FAIL**"
                note = outcome.note.replace("|", "\\|").replace("\n", " ")
                used = f" [credentials: {outcome.credentials}]" if outcome.credentials else ""
                cells.append(f"{verdict} {outcome.elapsed_s:.2f} s: {note}{used}")
        name = f"`{check}`" + (f" {variant}" if variant else "")
        lines.append(
            f"| {client} | {versions.get(client, '?')} | {name} | " + " | ".join(cells) + " |"
        )
    build_note = (
        f"failed: {rust_build_error[:200]}" if rust_build_error else f"{rust_build_s:.1f} s"
    )
    lines += [
        "",
        "Rust probe build (`cargo build --release` of `conformance/rust`, this run):"
        f" {build_note}.",
        "",
        "## How each client is run",
        "",
        "- **botocore**: `boto3.Session().get_credentials()` (the default chain, with"
        " `AWS_EC2_METADATA_SERVICE_ENDPOINT` set and empty config and credentials files),"
        " `InstanceMetadataFetcher.retrieve_iam_role_credentials()`,"
        " `InstanceMetadataRegionFetcher.retrieve_region()` and `IMDSRegionProvider.provide()`;"
        " the chain runs with `AWS_EC2_METADATA_V1_DISABLED` unset and set to `true`.",
        "- **awscli**: `aws configure list`, and `aws sts get-caller-identity` sent to a loopback"
        " listener standing in for STS, which records the SigV4 `Authorization` and"
        " `X-Amz-Security-Token` headers the CLI signed with the IMDS credentials.",
        "- **rust-sdk**: `conformance/rust`, a program using `aws_config::imds::Client`,"
        " `ImdsRegionProvider` and `ImdsCredentialsProvider` with their defaults.",
        "- **js-sdk**: `conformance/js/probe.js`: `fromInstanceMetadata()` and"
        " `new MetadataService()`, with `AWS_EC2_METADATA_V1_DISABLED` unset and `true`, and a"
        " `MetadataService({ disableFetchToken: true })` as a deliberately IMDSv1-only client.",
        "- **go-sdk**: `conformance/go/probe`, built from Debian's sources of the Go SDKs: v2's"
        " `imds.NewFromConfig` (`GetMetadata`, `GetUserData`, `GetRegion`,"
        " `GetInstanceIdentityDocument`, `GetIAMInfo`), `ec2rolecreds`, the default chain and"
        " `config.WithEC2IMDSRegion()`; v1's `ec2metadata` client, `ec2rolecreds` and the"
        " session's chain. v2's `ec2rolecreds` keeps a set for at most an hour, so its expiry is"
        " judged as min(served, now + 1 h).",
        "- **containers**: the container credential providers pointed at the server's container"
        " listener with `AWS_CONTAINER_CREDENTIALS_FULL_URI` (loopback): botocore's default chain"
        " (`container-role`), the JavaScript SDK's `fromContainerMetadata()` and `fromHttp()`,"
        " and the Go SDKs' default chains, on a `[[container-credentials]]` route with"
        " `AWS_CONTAINER_AUTHORIZATION_TOKEN` or `_TOKEN_FILE` and on the ECS task's"
        " `/v2/credentials/ID`; `fromHttp()` with a wrong token must be refused with 403. The"
        " OpenTelemetry ECS resource detectors, `AwsEcsResourceDetector` (Python) and"
        " `awsEcsDetector` (`@opentelemetry/resource-detector-aws`, JavaScript), read"
        " `ECS_CONTAINER_METADATA_URI_V4`; their cluster, task and container ARNs must be in the"
        " host instance's region and account."
        " The Rust SDK's `EcsCredentialsProvider` (`conformance/rust container`) reads the same"
        " variables. In the network namespace, where the server listens on the agents' own"
        " addresses (`169.254.170.2:80`, `169.254.170.23:80`), botocore and the Rust SDK read"
        " an ECS task's `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, and botocore, `fromHttp()`"
        " and the Rust SDK an EKS pod's `AWS_CONTAINER_CREDENTIALS_FULL_URI` with the"
        " service-account token in `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, as `imds"
        " container-env --pod-identity` writes them."
        " The container endpoints do not depend on the instance's metadata options: every mode"
        " must answer the same.",
        "- **ec2-metadata**: the library has no endpoint setting, so it runs unmodified inside a"
        " network namespace where imds listens on 169.254.169.254:80.",
        "- **cloud-init**: `DataSourceEc2.get_data()` from Debian's package, run by"
        " `/usr/bin/python3` with `metadata_urls` pointing at the server and"
        f" `max_wait: {CLOUD_INIT_MAX_WAIT_S}`. cloud-init decides from the DMI/Xen UUID whether"
        " it is on AWS; that one fact is fixed by the probe: `platform=aws` (an `ec2…` hypervisor"
        " UUID: IMDSv2 token, dynamic/instance-identity crawled) and `platform=other` (IMDSv1"
        " only, as on any non-EC2 machine: AWS's own IMDS refuses it too when tokens are"
        " required).",
        "  Its `instance-data.json` (written by `get_data()` on AWS) is compared with"
        " `imds capture --format cloud-init --api-version 2021-03-23` of the same server:"
        " `ds`, `v1` and `base64_encoded_keys` must be the same, and the text laid out as"
        " cloud-init lays it out; left aside are the keys about the machine cloud-init runs on"
        " (`sys_info`, `merged_cfg`, `v1.distro` and the like), `ds._doc`, and the credentials'"
        " `LastUpdated` in `iam/info` and `identity-credentials/ec2/info`.",
        "- **curl**: AWS's documented commands run verbatim (`TOKEN=`curl -X PUT"
        ' "http://169.254.169.254/latest/api/token" ...`` then `meta-data/` and'
        " `iam/security-credentials/ROLE`; and the IMDSv1 `curl"
        " http://169.254.169.254/latest/meta-data/`) inside the namespace.",
        "",
        "## Client behaviour worth knowing",
        "",
        "- JavaScript `MetadataService` retries a refused token request three times (1 s, 1.2 s,"
        " 1.44 s) because the error it rethrows loses the status its retry rule looks at, so"
        " each call takes about 3.6 s to fail; it never reads the body of a non-200 answer, so"
        " the Node.js process stays up until the server closes that connection.",
        "- botocore's default chain raises `MetadataRetrievalError` when the token request is"
        " refused and `AWS_EC2_METADATA_V1_DISABLED=true`; without it, it resolves no"
        " credentials.",
        "- cloud-init off EC2 never asks for a token: with tokens required it gets 401 and"
        " retries until `max_wait` (120 s by default), as it would against AWS's IMDS.",
        "- awscli 1.x ships its own copy of botocore (`awscli.botocore`), whose version differs"
        " from the separately installed botocore.",
        "",
    ]
    RESULTS_FILE.write_text("\n".join(lines))
    write_readme_table(rows, versions, passed, failed)


README_FILE = REPO_DIR / "README.md"
TABLE_BEGIN = "<!-- compatibility-table:begin (written by conformance/run) -->"
TABLE_END = "<!-- compatibility-table:end -->"


def write_readme_table(rows, versions, passed, failed):
    """Replaces the compatibility table between the README's markers with this run's."""
    if not README_FILE.exists():
        return
    text = README_FILE.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        return
    table = [
        TABLE_BEGIN,
        f"Last run {datetime.date.today().isoformat()}: **{passed} passed, {failed} failed**"
        " (details and timings in `conformance/results.md`).",
        "In parentheses, from the server's audit log, the credentials the client got: on which"
        " path (`extended`: `iam/security-credentials-extended/`, `old`:"
        " `iam/security-credentials/`) and which set (`v1`: the IMDSv1 set a tokenless request"
        " gets, `v2`: the IMDSv2 set), or from which endpoint (`container`).",
        "",
        "| Client | Version | Check | " + " | ".join(mode.name for mode in MODES) + " |",
        "|---|---|---|" + "---|" * len(MODES),
    ]
    for (client, check, variant), by_mode in rows.items():
        cells = []
        for mode in MODES:
            outcome = by_mode.get(mode.name)
            if outcome is None:
                cells.append("not run")
                continue
            verdict = "pass" if outcome.passed else "**FAIL**"
            cells.append(f"{verdict} ({outcome.credentials})" if outcome.credentials else verdict)
        name = f"`{check}`" + (f" {variant}" if variant else "")
        table.append(
            f"| {client} | {versions.get(client, '?')} | {name} | " + " | ".join(cells) + " |"
        )
    table.append(TABLE_END)
    before, rest = text.split(TABLE_BEGIN, 1)
    _, after = rest.split(TABLE_END, 1)
    README_FILE.write_text(before + "\n".join(table) + after)


def main():
    started = time.monotonic()
    wanted = set(sys.argv[1:])
    unknown = wanted - {name for name, _ in CHECKS}
    if unknown:
        print(f"conformance: unknown client(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    if not IMDS_BINARY.exists():
        print(f"conformance: {IMDS_BINARY} missing: cargo build --release -p imds", file=sys.stderr)
        print("conformance: 0 passed, 1 failed")
        return 1

    # SIGTERM and SIGHUP unwind like Ctrl-C, so servers stop and the namespace is removed.
    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    instance = Instance.load(INSTANCE_CONFIG)
    scratch = Path(tempfile.mkdtemp(prefix="imds-conformance-"))
    namespace = Namespace()
    suite = Suite(instance=instance, scratch=scratch, namespace=namespace)
    servers = []
    rust_build_s, rust_build_error = 0.0, None
    try:
        if not wanted or "rust-sdk" in wanted:
            rust_build_s, rust_build_error = build_rust_probe(scratch)
            print(f"conformance: Rust probe build {rust_build_s:.1f} s", flush=True)
        go_build_error = None
        if not wanted or "go-sdk" in wanted:
            go_build_s, go_build_error = build_go_probe(scratch)
            print(f"conformance: Go probe build {go_build_s:.1f} s", flush=True)
        namespace.create()
        for mode in MODES:
            suite.mode = mode
            suite.server = Server(mode, scratch / f"state-{mode.name}")
            servers.append(suite.server)
            suite.server.start()
            suite.namespace_server = None
            if namespace.created:
                suite.namespace_server = Server(mode, scratch / f"state-ns-{mode.name}", namespace)
                servers.append(suite.namespace_server)
                suite.namespace_server.start()
            for name, check in CHECKS:
                if wanted and name not in wanted:
                    continue
                if suite.server.error:
                    suite.fail(name, "all checks", "", suite.server.error)
                    continue
                if name == "rust-sdk" and rust_build_error:
                    suite.fail(name, "all checks", "", rust_build_error.splitlines()[0])
                    continue
                if name == "go-sdk" and go_build_error:
                    suite.fail(name, "all checks", "", go_build_error.splitlines()[0])
                    continue
                try:
                    check(suite)
                except CheckFailed as failure:
                    suite.fail(name, "run", "", str(failure))
            for server in servers:
                server.stop()
            servers.clear()
    finally:
        for server in servers:
            server.stop()
        namespace.delete()
        shutil.rmtree(scratch, ignore_errors=True)

    total_s = time.monotonic() - started
    passed = sum(outcome.passed for outcome in suite.outcomes)
    failed = len(suite.outcomes) - passed
    if not wanted:
        write_results(suite.outcomes, collect_versions(), rust_build_s, rust_build_error, total_s)
        print(f"conformance: wrote {RESULTS_FILE.relative_to(REPO_DIR)}")
    print(f"conformance: {passed} passed, {failed} failed")
    return 1 if failed or not suite.outcomes else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("conformance: interrupted", file=sys.stderr)
        sys.exit(130)
