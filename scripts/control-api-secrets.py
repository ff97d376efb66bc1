"""No secret where it must not be, after a schemathesis run against the control API.

Usage: control-api-secrets.py ADMIN_TOKEN_FILE EXCHANGES_HAR SERVER_LOG

Secrets: the admin token; every `secret-access-key` and `session-token` a request gave a role
(PUT /v1/roles/{role_name}); every `SecretAccessKey` and `Token` the credentials route handed
out. None may appear in the server's log. In answers: the admin token never; role secrets and
handed-out credentials only in the credentials route's answers (handing them out is its job).
An answer that repeats what its own request said (an error naming the value at fault) leaks
nothing, so values in the request's URL or body are not looked for in its answer. Values shorter
than 8 characters are left out: they would match by chance.
"""
from urllib.parse import unquote

import json
import sys

MIN_LENGTH = 8


def body_json(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def main():
    token_path, har_path, log_path = sys.argv[1:4]
    admin_token = open(token_path, encoding="utf-8").read().strip()
    log = open(log_path, encoding="utf-8", errors="replace").read()
    with open(har_path, encoding="utf-8") as har:
        entries = json.load(har)["log"]["entries"]

    role_secrets = set()
    handed_out = set()
    answers = []
    for entry in entries:
        request, response = entry["request"], entry["response"]
        url, method = request["url"], request["method"]
        answer = response.get("content", {}).get("text") or ""
        own = unquote(url) + ((request.get("postData") or {}).get("text") or "")
        answers.append((method, url, answer, own))
        if method == "PUT" and "/v1/roles/" in url:
            sent = body_json((request.get("postData") or {}).get("text"))
            if isinstance(sent, dict):
                for key in ("secret-access-key", "session-token"):
                    if isinstance(sent.get(key), str):
                        role_secrets.add(sent[key])
        if url.split("?")[0].endswith("/credentials") and response["status"] == 200:
            got = body_json(answer)
            if isinstance(got, dict):
                for key in ("SecretAccessKey", "Token"):
                    if isinstance(got.get(key), str):
                        handed_out.add(got[key])

    def long_enough(values):
        return {value for value in values if len(value) >= MIN_LENGTH}

    role_secrets = long_enough(role_secrets)
    handed_out = long_enough(handed_out)
    problems = []
    for name, values in (
        ("the admin token", {admin_token}),
        ("a role's secret", role_secrets),
        ("handed-out credentials", handed_out),
    ):
        if any(value in log for value in values):
            problems.append(f"{name} is in the server's log")
    for method, url, answer, own in answers:
        if admin_token in answer:
            problems.append(f"{method} {url} answered with the admin token")
        if url.split("?")[0].endswith("/credentials"):
            continue
        if any(value in answer and value not in own for value in role_secrets | handed_out):
            problems.append(f"{method} {url} answered with a role's secret")
    print(
        f"control-api-secrets: {len(answers)} exchanges, {len(role_secrets)} role secrets, "
        f"{len(handed_out)} handed-out secrets checked"
    )
    for problem in sorted(set(problems)):
        print(f"control-api-secrets: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
