"""Schemathesis hooks for scripts/api-conformance.sh: the network endpoints (/bpp/rating,
/bap/on_rating) are called signed, as an ONDC peer calls them, so that generated bodies get past
the signature check to the parsing, the schema, the context rules and the business checks.

The body is serialised here, once, and those exact bytes are both signed and sent (ONDC signs
the raw body). The header comes from `ondc-rating sign` (CONFORMANCE_BIN) with the server's own
key (CONFORMANCE_SIGNING_KEY), which the server trusts as CONFORMANCE_SUBSCRIBER_ID and
CONFORMANCE_UNIQUE_KEY_ID; the interop tests check that signer against ONDC's Node SDK.
"""

import json
import os
import subprocess

import schemathesis

_NETWORK_PATHS = ("/bpp/rating", "/bap/on_rating")


def _authorization(body: bytes) -> str:
    signed = subprocess.run(
        [
            os.environ["CONFORMANCE_BIN"],
            "sign",
            "--subscriber-id",
            os.environ["CONFORMANCE_SUBSCRIBER_ID"],
            "--unique-key-id",
            os.environ["CONFORMANCE_UNIQUE_KEY_ID"],
            "--private-key",
            os.environ["CONFORMANCE_SIGNING_KEY"],
        ],
        input=body,
        capture_output=True,
        check=True,
    )
    return signed.stdout.decode().strip()


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path not in _NETWORK_PATHS:
        return
    headers = case.headers
    # A request generated with an `Authorization` gets a real signature in its place; one
    # generated without it (to see the header required) is sent without it.
    if not headers or not any(name.lower() == "authorization" for name in headers):
        return
    body = case.body
    if isinstance(body, (bytes, bytearray)):
        raw = bytes(body)
    elif body is None or type(body).__name__ == "NotSet":
        raw = b""
    else:
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    for name in [n for n in headers if n.lower() in ("authorization", "content-type")]:
        del headers[name]
    headers["Content-Type"] = "application/json"
    headers["Authorization"] = _authorization(raw)
    kwargs["data"] = raw
