#!/usr/bin/env python3
"""Drives a running broker through one lifecycle with the client openapi-python-client generated from
openapi/openapi.json, using its typed models only (no hand-built dicts): provision the reference example of
broker-api.md, wait for Ready, read the resource, deprovision, wait until the deployment is gone.

The reference example's callbackUrl (http://manager:9090/v1/callback) does not resolve here, so callbacks go to
a small receiver this script runs on 127.0.0.1; the phases it receives are checked too.

Run by .ci/generated-client, which generates and installs the `kidp_broker_client` package first.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kidp_broker_client import Client
from kidp_broker_client.api.lifecycle import deprovision, provision
from kidp_broker_client.api.state import get_status, list_resources
from kidp_broker_client.models import (
    BackupSpec,
    DeploymentStatus,
    DeprovisionAccepted,
    DeprovisionRequest,
    EncryptionSpec,
    ErrorBody,
    ErrorCode,
    MysqlSpecVersion,
    Phase,
    PostgresqlSpec,
    PostgresqlSpecEngine,
    PostgresqlSpecVersion,
    ProvisionAccepted,
    ProvisionRequest,
    ResourceList,
    Size,
    SupportedResourceType,
)

NAMESPACE = "team-platform"
NAME = "postgres-app-db"
DEADLINE_SECONDS = 60.0
POLL_SECONDS = 0.25


class Callbacks:
    """Collects the callback bodies the broker posts."""

    def __init__(self):
        self.bodies = []
        self.lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with received.lock:
                    received.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def phases(self):
        with self.lock:
            return [b.get("phase") for b in self.bodies]

    def close(self):
        self.server.shutdown()


def step(message):
    print(f"-- {message}", flush=True)


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def wait_for(what, probe):
    """Calls probe() until it returns something truthy, or fails after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    last = None
    while time.monotonic() < deadline:
        ok, last = probe()
        if ok:
            return last
        time.sleep(POLL_SECONDS)
    fail(f"{what} within {DEADLINE_SECONDS:.0f}s; last answer: {last}")


def typed_models_refuse_what_the_broker_refuses():
    """The bug the spec used to have: a generated client could build mysql 15, or omit size."""
    try:
        MysqlSpecVersion("15")
        fail("the generated MysqlSpecVersion accepted 15")
    except ValueError:
        pass
    try:
        PostgresqlSpec(engine=PostgresqlSpecEngine.POSTGRESQL, version=PostgresqlSpecVersion.V15)
        fail("the generated PostgresqlSpec accepted a spec without size")
    except TypeError:
        pass
    step("typed models: MysqlSpecVersion refuses '15', PostgresqlSpec requires size")


def reference_request(callback_url):
    """The provision example of broker-api.md, built from the generated models."""
    return ProvisionRequest(
        resource_type=SupportedResourceType.DATABASE,
        resource_name=NAME,
        namespace=NAMESPACE,
        team="platform-team",
        owner="user@example.com",
        callback_url=callback_url,
        spec=PostgresqlSpec(
            engine=PostgresqlSpecEngine.POSTGRESQL,
            version=PostgresqlSpecVersion.V15,
            size=Size.MEDIUM,
            high_availability=True,
            backup=BackupSpec(enabled=True, retention="7d"),
            encryption=EncryptionSpec(at_rest=True, in_transit=True),
        ),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    args = parser.parse_args()

    typed_models_refuse_what_the_broker_refuses()
    callbacks = Callbacks()
    step(f"callback receiver on {callbacks.url}")
    client = Client(base_url=args.base_url, timeout=10.0, raise_on_unexpected_status=True)

    # A request the broker refuses comes back as the typed error body.
    bad = reference_request(callbacks.url)
    bad.namespace = "Not_A_Namespace"
    resp = provision.sync_detailed(client=client, body=bad)
    if resp.status_code != 400 or not isinstance(resp.parsed, ErrorBody):
        fail(f"an invalid namespace answered {resp.status_code}: {resp.content!r}")
    if resp.parsed.error != ErrorCode.VALIDATION_FAILED or not resp.parsed.message.startswith("namespace "):
        fail(f"unexpected error body {resp.parsed.to_dict()}")
    step(f"invalid namespace -> 400 {resp.parsed.error.value}: {resp.parsed.message}")

    request = reference_request(callbacks.url)
    resp = provision.sync_detailed(client=client, body=request)
    if resp.status_code != 202 or not isinstance(resp.parsed, ProvisionAccepted):
        fail(f"provision answered {resp.status_code}: {resp.content!r}")
    deployment_id = resp.parsed.deployment_id
    step(f"provision -> 202 {resp.parsed.status}: {deployment_id} ({resp.parsed.message})")

    def ready():
        r = get_status.sync_detailed(client=client, id=deployment_id)
        if not isinstance(r.parsed, DeploymentStatus):
            return False, f"{r.status_code} {r.content!r}"
        if r.parsed.phase == Phase.FAILED:
            fail(f"provisioning failed: {r.parsed.message}")
        return r.parsed.phase == Phase.READY, r.parsed

    status = wait_for("phase Ready", ready)
    step(f"status -> {status.phase.value} at {status.last_updated.isoformat()}: {status.message}")

    listed = list_resources.sync(client=client, namespace=NAMESPACE, resource_name=NAME)
    if not isinstance(listed, ResourceList) or listed.total != 1:
        fail(f"resources answered {listed}")
    state = listed.resources[0]
    expected_endpoint = f"{NAME}.{NAMESPACE}.svc.cluster.local"
    if state.deployment_id != deployment_id or state.phase != Phase.READY:
        fail(f"resource state {state.to_dict()}")
    if state.endpoint != expected_endpoint or state.port != 5432:
        fail(f"endpoint {state.endpoint}:{state.port}, expected {expected_endpoint}:5432")
    step(
        f"resources -> {state.resource_type}/{state.resource_name} {state.phase.value} "
        f"{state.health_status.value}, endpoint {state.endpoint}:{state.port}, "
        f"desired {state.desired_spec.engine} {state.desired_spec.version} {state.desired_spec.size}"
    )

    resp = deprovision.sync_detailed(
        client=client,
        body=DeprovisionRequest(
            deployment_id=deployment_id,
            resource_type=SupportedResourceType.DATABASE,
            resource_name=NAME,
            namespace=NAMESPACE,
            callback_url=callbacks.url,
        ),
    )
    if resp.status_code != 202 or not isinstance(resp.parsed, DeprovisionAccepted):
        fail(f"deprovision answered {resp.status_code}: {resp.content!r}")
    step(f"deprovision -> 202 {resp.parsed.status}: {resp.parsed.message}")

    def gone():
        r = get_status.sync_detailed(client=client, id=deployment_id)
        if r.status_code == 404 and isinstance(r.parsed, ErrorBody):
            return r.parsed.error == ErrorCode.RESOURCE_NOT_FOUND, r.parsed
        phase = r.parsed.phase.value if isinstance(r.parsed, DeploymentStatus) else r.content
        return False, f"{r.status_code} {phase}"

    body = wait_for("status 404 after deprovisioning", gone)
    step(f"status -> 404 {body.error.value}: {body.message}")

    wait_for(
        "the Ready and Deleted callbacks",
        lambda: ({"Ready", "Deleted"} <= set(callbacks.phases()), callbacks.phases()),
    )
    step(f"callbacks received: {', '.join(callbacks.phases())}")
    callbacks.close()
    print("OK: the generated client provisioned, read and deprovisioned the reference example", flush=True)


if __name__ == "__main__":
    main()
