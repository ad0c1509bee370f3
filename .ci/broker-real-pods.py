"""The broker's reference example on real pods (kubesim's container kubelet): provisions postgresql 15 with HA,
backup and TLS to Ready; connects from the host to the primary with the credentials Secret over TLS, verifying the
server against the Secret's ca.crt; writes a row on the primary and reads it on both replicas; sees a standby that
stops streaming turn unready and ready again; runs the backup
CronJob once and finds a non-empty dump on the backup volume; provisions redis with HA and sees the replicas in
sync; kills a database container and sees it restarted with its data intact; deprovisions both and finds no
container, network namespace, mount or volume directory left.

Run by .ci/broker-real-pods with: BROKER (URL), KUBECONFIG, KUBELET_DIR (the kubelet's state directory)."""
import base64, json, os, subprocess, sys, tempfile, time, urllib.error, urllib.request

import psycopg
import psycopg.sql

BROKER = os.environ["BROKER"]
STATE = os.environ["KUBELET_DIR"]
NS = "team-platform"


def say(msg):
    print(msg, flush=True)


def kubectl(*args, check=True):
    r = subprocess.run(["kubectl", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def api(method, path, body=None):
    """One broker call; a 429 is retried after its Retry-After, as a well-behaved manager does."""
    for _ in range(30):
        req = urllib.request.Request(BROKER + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            if e.code != 429:
                raise SystemExit(f"{method} {path}: {e.code} {e.read().decode()}")
            time.sleep(int(e.headers.get("Retry-After", "1")))
    raise SystemExit(f"{method} {path}: still rate limited")


def until(what, seconds, f):
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        try:
            got = f()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - keep trying until the deadline, then report the last error
            last = e
        time.sleep(0.5)
    kubectl("get", "pods", "-A", "-o", "wide", check=False)
    raise SystemExit(f"timed out waiting for {what} (last error: {last})")


def provision(name, spec):
    r = api("POST", "/v1/provision", {
        "resourceType": "database", "resourceName": name, "namespace": NS, "team": "platform-team",
        "owner": "alice@example.com", "callbackUrl": "http://127.0.0.1:9/v1/callback", "spec": spec})
    dep = r["deploymentId"]
    def ready():
        s = api("GET", f"/v1/status?id={dep}")
        if s["phase"] == "Failed":
            raise SystemExit(f"{name} failed: {s}")
        return s if s["phase"] == "Ready" else None
    s = until(f"{name} Ready", 240, ready)
    say(f"   {name}: {s['phase']} — {s['message']}")
    return dep


def secret(name):
    o = json.loads(kubectl("get", "secret", name, "-n", NS, "-o", "json"))
    return {k: base64.b64decode(v).decode() for k, v in o["data"].items()}


def pod(name):
    return json.loads(kubectl("get", "pod", name, "-n", NS, "-o", "json"))


def connect(creds, ca_file, pod_name, db):
    p = pod(pod_name)
    fqdn = f"{pod_name}.{db}-headless.{NS}.svc.cluster.local"
    # The host cannot resolve cluster names: connect to the pod IP, verify the certificate against the pod's name.
    return psycopg.connect(host=fqdn, hostaddr=p["status"]["podIP"], port=5432, user=creds["username"],
                           password=creds["password"], dbname=creds.get("database", "postgres"),
                           sslmode="verify-full", sslrootcert=ca_file, connect_timeout=5, autocommit=True)


def main():
    say("== postgresql 15, HA, backup, TLS: the reference example, to Ready")
    pg = provision("orders", {"engine": "postgresql", "version": "15", "size": "medium", "highAvailability": True,
                              "backup": {"enabled": True, "retention": "7d", "schedule": "0 2 * * *"},
                              "encryption": {"atRest": True, "inTransit": True}})
    secrets = [s for s in kubectl("get", "secrets", "-n", NS, "-o", "name").split() if "orders" in s]
    say(f"   secrets: {' '.join(secrets)}")
    creds = secret(os.environ.get("PG_SECRET", "orders-credentials"))
    tls = secret(os.environ.get("PG_TLS_SECRET", "orders-tls"))
    ca = tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False)
    ca.write(tls["ca.crt"])
    ca.close()

    say("== from the host: TLS to the primary, verified against the Secret's ca.crt; a row on the primary")
    with connect(creds, ca.name, "orders-0", "orders") as c:
        ssl = c.execute("select ssl, version from pg_stat_ssl where pid = pg_backend_pid()").fetchone()
        if not ssl[0]:
            raise SystemExit("the connection is not encrypted")
        c.execute("create table if not exists kept (v text)")
        c.execute("insert into kept values ('written on the primary')")
        say(f"   connected as {creds['username']} over {ssl[1]}; row written")
    for replica in ("orders-1", "orders-2"):
        def read():
            with connect(creds, ca.name, replica, "orders") as c:
                if not c.execute("select pg_is_in_recovery()").fetchone()[0]:
                    raise SystemExit(f"{replica} is not a standby")
                return c.execute("select v from kept").fetchone()
        row = until(f"the row on {replica}", 60, read)
        say(f"   {replica} (standby) reads: {row[0]}")

    say("== a standby that stops streaming from the primary is not Ready (and is again once it streams)")
    def pod_ready(name):
        conds = pod(name)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    with connect(creds, ca.name, "orders-2", "orders") as c:
        conninfo = c.execute("show primary_conninfo").fetchone()[0]
        c.execute("alter system set primary_conninfo = 'host=nowhere.invalid port=5432'")
        c.execute("select pg_reload_conf()")
    until("orders-2 to turn unready", 90, lambda: not pod_ready("orders-2"))
    say("   orders-2 pointed at no primary: Ready=False")
    with connect(creds, ca.name, "orders-2", "orders") as c:
        c.execute(psycopg.sql.SQL("alter system set primary_conninfo = {}").format(psycopg.sql.Literal(conninfo)))
        c.execute("select pg_reload_conf()")
    until("orders-2 to be Ready again", 90, lambda: pod_ready("orders-2"))
    say("   orders-2 streaming again: Ready=True")

    say("== the backup CronJob, run once, leaves a non-empty dump on the backup volume")
    cj = kubectl("get", "cronjobs", "-n", NS, "-o", "jsonpath={.items[0].metadata.name}")
    kubectl("create", "job", "backup-now", f"--from=cronjob/{cj}", "-n", NS)
    until("the backup Job to complete", 120, lambda: json.loads(kubectl(
        "get", "job", "backup-now", "-n", NS, "-o", "json")).get("status", {}).get("succeeded"))
    claims = json.loads(kubectl("get", "pvc", "-n", NS, "-o", "json"))["items"]
    backup = [c for c in claims if "backup" in c["metadata"]["name"]]
    if not backup:
        raise SystemExit(f"no backup claim among {[c['metadata']['name'] for c in claims]}")
    dumps = []
    for root, _, files in os.walk(os.path.join(STATE, "claims", backup[0]["metadata"]["uid"])):
        dumps += [os.path.join(root, f) for f in files if os.path.getsize(os.path.join(root, f)) > 0]
    if not dumps:
        raise SystemExit(f"no non-empty file on the backup claim {backup[0]['metadata']['name']}")
    say(f"   {cj}: {os.path.basename(dumps[0])} ({os.path.getsize(dumps[0])} bytes)")

    say("== a killed database container is restarted with its data intact")
    uid = pod("orders-0")["metadata"]["uid"].replace("-", "")[:12]
    subprocess.run(["runc", "kill", f"ks-{uid}-database", "KILL"], check=True)
    until("orders-0 restarted", 60, lambda: pod("orders-0")["status"]["containerStatuses"][0]["restartCount"] >= 1)
    def back():
        with connect(creds, ca.name, "orders-0", "orders") as c:
            return c.execute("select v from kept").fetchone()
    row = until("orders-0 back", 90, back)
    say(f"   orders-0 restarted {pod('orders-0')['status']['containerStatuses'][0]['restartCount']}x, reads: {row[0]}")

    say("== redis with HA: the replicas are in sync")
    rd = provision("sessions", {"engine": "redis", "version": "7.0", "size": "small", "highAvailability": True})
    rpass = secret("sessions-credentials").get("password", "")
    for replica in ("sessions-1", "sessions-2"):
        uid = pod(replica)["metadata"]["uid"].replace("-", "")[:12]
        def synced():
            out = subprocess.run(["runc", "exec", "-e", f"REDISCLI_AUTH={rpass}", f"ks-{uid}-database",
                                  "redis-cli", "info", "replication"], capture_output=True, text=True).stdout
            return out if "master_link_status:up" in out else None
        info = until(f"{replica} in sync", 60, synced)
        say(f"   {replica}: " + ", ".join(l.strip() for l in info.splitlines() if l.startswith(("role", "master_link"))))

    say("== deprovision both: nothing is left")
    for dep, name in ((pg, "orders"), (rd, "sessions")):
        api("POST", "/v1/deprovision", {"deploymentId": dep, "resourceType": "database", "resourceName": name,
                                        "namespace": NS, "callbackUrl": "http://127.0.0.1:9/v1/callback"})
    until("the pods to go", 120, lambda: not kubectl("get", "pods", "-n", NS, "-o", "name").strip())
    until("the claims to go", 120, lambda: not kubectl("get", "pvc", "-n", NS, "-o", "name").strip())
    until("no containers", 30, lambda: not [l for l in subprocess.run(["runc", "list", "-q"], capture_output=True,
                                                                      text=True).stdout.split() if l.startswith("ks-")])
    until("no network namespaces", 30, lambda: "ks-" not in subprocess.run(["ip", "netns", "list"],
                                                                            capture_output=True, text=True).stdout)
    until("no mounts", 30, lambda: STATE not in open("/proc/self/mountinfo").read())
    until("no volume directories", 30, lambda: not os.listdir(os.path.join(STATE, "claims"))
          and not os.listdir(os.path.join(STATE, "pods")))
    say("   every check passed")


if __name__ == "__main__":
    try:
        main()
    except SystemExit as e:
        if e.code not in (None, 0):
            print(f"-- {e.code}", file=sys.stderr)
            kubectl("get", "pods", "-A", "-o", "wide", check=False)
        raise
