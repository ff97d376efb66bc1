"""The suite's own view of a server: plain IMDSv2 requests with http.client, nothing else.

conformance/run asks this for the credentials a server is serving right now, to compare with
what each client resolved. Run as a script (inside a network namespace, for the servers that
listen on 169.254.169.254) it prints the same as JSON.

Usage: raw_imds.py http://HOST:PORT
       raw_imds.py --container URL [AUTHORIZATION]   (a container credentials document)
"""

import http.client
import json
import sys
import urllib.parse

TOKEN_TTL_SECONDS = "21600"


def request(base_url, method, path, headers=None):
    """One request on a fresh connection; returns (status, body bytes)."""
    parsed = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def current_credentials(base_url):
    """The role name and credentials JSON the server serves now, through IMDSv2."""
    status, token = request(
        base_url,
        "PUT",
        "/latest/api/token",
        {"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL_SECONDS},
    )
    if status != 200:
        raise RuntimeError(f"token PUT answered {status}")
    headers = {"X-aws-ec2-metadata-token": token.decode("ascii")}
    status, role_list = request(
        base_url, "GET", "/latest/meta-data/iam/security-credentials/", headers
    )
    if status != 200:
        raise RuntimeError(f"role listing answered {status}")
    role = role_list.decode("utf-8")
    status, body = request(
        base_url, "GET", f"/latest/meta-data/iam/security-credentials/{role}", headers
    )
    if status != 200:
        raise RuntimeError(f"credentials GET answered {status}")
    return {"role": role, "credentials": json.loads(body)}


def container_credentials(url, authorization=None):
    """The credentials document a container endpoint (ECS, EKS Pod Identity) serves at url."""
    parsed = urllib.parse.urlsplit(url)
    base = f"{parsed.scheme}://{parsed.netloc}"
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    headers = {"Authorization": authorization} if authorization else {}
    status, body = request(base, "GET", path, headers)
    if status != 200:
        raise RuntimeError(f"container credentials GET answered {status}")
    return json.loads(body)


if __name__ == "__main__":
    if sys.argv[1] == "--container":
        print(json.dumps(container_credentials(sys.argv[2], *sys.argv[3:4])))
    else:
        print(json.dumps(current_credentials(sys.argv[1])))
