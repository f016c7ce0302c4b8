"""The steps of scripts/demo.sh (run with Synapse's venv python; standard library only).

    demo.py start DIR   set up Synapse and knockwarden under DIR, show two knocks, leave both running
    demo.py stop DIR    stop them
"""

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = "localhost"
SECRET = "knockwarden-demo-shared-secret"
PASSWORD = "demo-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid_file):
    try:
        pid = int(Path(pid_file).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop(demo):
    stopped = False
    for name in ("knockwarden", "synapse"):
        pid = alive(demo / f"{name}.pid")
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not alive(demo / f"{name}.pid"):
                    break
                time.sleep(0.1)
            print(f"stopped {name} (pid {pid})")
            stopped = True
        (demo / f"{name}.pid").unlink(missing_ok=True)
    if not stopped:
        print("the demo is not running")


def spawn(demo, name, args):
    log = open(demo / f"{name}.log", "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=demo, start_new_session=True)
    (demo / f"{name}.pid").write_text(str(proc.pid))
    return proc


def tail(path, n=30):
    lines = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])


class Client:
    def __init__(self, base, token=None, user_id=None):
        self.base, self.token, self.user_id = base, token, user_id

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + "/_matrix/client/" + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                return res.status, json.loads(res.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def ok(self, method, path, body=None):
        status, v = self.call(method, path, body)
        if not 200 <= status < 300:
            sys.exit(f"demo: {method} {path} failed: {status} {v}")
        return v


def q(s):
    return urllib.parse.quote(s, safe="")


def register(base, name):
    url = base + "/_synapse/admin/v1/register"
    nonce = json.loads(urllib.request.urlopen(url).read())["nonce"]
    mac = hmac.new(SECRET.encode(), f"{nonce}\0{name}\0{PASSWORD}\0notadmin".encode(), hashlib.sha1).hexdigest()
    body = {"nonce": nonce, "username": name, "password": PASSWORD, "admin": False, "mac": mac}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    v = json.loads(urllib.request.urlopen(req).read())
    return Client(base, v["access_token"], v["user_id"])


def wait(what, check, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = check()
        if v:
            return v
        time.sleep(0.2)
    sys.exit(f"demo: timed out waiting for {what}")


def start(demo):
    if alive(demo / "synapse.pid") or alive(demo / "knockwarden.pid"):
        sys.exit("demo: already running; stop it first with: scripts/demo.sh stop")
    shutil.rmtree(demo, ignore_errors=True)
    (demo / "policies").mkdir(parents=True)
    hs_port, kw_port = free_port(), free_port()
    base = f"http://127.0.0.1:{hs_port}"
    binary = os.environ.get("KNOCKWARDEN_BIN") or ROOT / "target/debug/knockwarden"

    # knockwarden: config, the example support policy for #support:localhost, registration.
    policy = (ROOT / "policies/examples/support.yaml").read_text().replace("#support:example.org", f"#support:{SERVER}")
    (demo / "policies/support.yaml").write_text(policy)
    (demo / "config.yaml").write_text(
        f"""homeserver:
  url: "{base}"
  server_name: "{SERVER}"
appservice:
  listen: "127.0.0.1:{kw_port}"
  registration: "registration.yaml"
database: "db"
policies: "policies"
control_room: "#control:{SERVER}"
moderators:
  power_level: 50
notify: all
"""
    )
    subprocess.run([binary, "generate-registration", "-c", demo / "config.yaml"], check=True, stdout=subprocess.DEVNULL)
    as_token = next(l.split(":", 1)[1].strip().strip('"') for l in (demo / "registration.yaml").read_text().splitlines() if l.startswith("as_token"))

    # Synapse: one client listener, SQLite, the registration, generous rate limits.
    many = "{per_second: 1000, burst_count: 1000}"
    (demo / "homeserver.yaml").write_text(
        f"""server_name: "{SERVER}"
public_baseurl: "{base}/"
listeners:
  - port: {hs_port}
    type: http
    tls: false
    bind_addresses: ['127.0.0.1']
    resources: [{{names: [client], compress: false}}]
database: {{name: sqlite3, args: {{database: "{demo}/homeserver.db"}}}}
media_store_path: "{demo}/media"
signing_key_path: "{demo}/signing.key"
report_stats: false
registration_shared_secret: "{SECRET}"
macaroon_secret_key: "knockwarden-demo-macaroon"
form_secret: "knockwarden-demo-form"
trusted_key_servers: []
suppress_key_server_warning: true
app_service_config_files: ["{demo}/registration.yaml"]
rc_message: {many}
rc_registration: {many}
rc_room_creation: {many}
rc_joins_per_room: {many}
rc_login: {{address: {many}, account: {many}, failed_attempts: {many}}}
rc_joins: {{local: {many}, remote: {many}}}
rc_invites: {{per_room: {many}, per_user: {many}, per_issuer: {many}}}
"""
    )
    synapse = [sys.executable, "-m", "synapse.app.homeserver", "-c", str(demo / "homeserver.yaml")]
    subprocess.run(synapse + ["--generate-keys"], check=True, cwd=demo, stdout=subprocess.DEVNULL)
    print(f"==> starting Synapse on {base} (server name {SERVER})")
    hs = spawn(demo, "synapse", synapse)

    def ready():
        if hs.poll() is not None:
            sys.exit(f"demo: Synapse exited ({hs.returncode}):\n{tail(demo / 'synapse.log')}")
        try:
            return urllib.request.urlopen(base + "/_matrix/client/versions", timeout=2).status == 200
        except OSError:
            return False

    wait("Synapse to start", ready)

    print("==> registering @owner, @alice and @bob, creating #control and the knock-only #support")
    owner, alice, bob = (register(base, n) for n in ("owner", "alice", "bob"))
    bot = f"@knockwarden:{SERVER}"
    owner.ok("POST", "v3/createRoom", {
        "preset": "private_chat", "room_alias_name": "control", "name": "knockwarden control room", "invite": [bot],
    })
    support = owner.ok("POST", "v3/createRoom", {
        "preset": "private_chat", "room_version": "10", "room_alias_name": "support", "name": "Support",
        "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
        "power_level_content_override": {"users": {owner.user_id: 100, bot: 100}},
        "invite": [bot],
    })["room_id"]

    print(f"==> starting knockwarden on 127.0.0.1:{kw_port}")
    kw = spawn(demo, "knockwarden", [binary, "serve", "-c", demo / "config.yaml"])

    def healthy():
        if kw.poll() is not None:
            sys.exit(f"demo: knockwarden exited ({kw.returncode}):\n{tail(demo / 'knockwarden.log')}")
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{kw_port}/health", timeout=2).status == 200
        except OSError:
            return False

    wait("knockwarden to start", healthy)
    # The homeserver checks that it reaches knockwarden. Synapse answers 502 ("AlreadyCancelled")
    # when its ping collides with a transaction it is sending at that moment: ask again.
    for attempt in range(20):
        status, v = Client(base, as_token).call("POST", "v1/appservice/knockwarden/ping", {})
        if 200 <= status < 300:
            break
        if status != 502 or attempt == 19:
            sys.exit(f"demo: POST v1/appservice/knockwarden/ping failed: {status} {v}")
        time.sleep(0.25)

    def membership(user):
        status, v = owner.call("GET", f"v3/rooms/{q(support)}/state/m.room.member/{q(user)}")
        return v if status == 200 else {}

    wait("the bot to join #support", lambda: membership(bot).get("membership") == "join")

    alias = f"#support:{SERVER}"
    print(f"==> @alice knocks on {alias}: \"Hi! My build fails with error E42 since the last update, can you help?\"")
    alice.ok("POST", f"v3/knock/{q(alias)}", {"reason": "Hi! My build fails with error E42 since the last update, can you help?"})
    print(f"==> @bob knocks on {alias}: \"help\"")
    bob.ok("POST", f"v3/knock/{q(alias)}", {"reason": "help"})
    a = wait("alice's invite", lambda: membership(alice.user_id) if membership(alice.user_id).get("membership") == "invite" else None)
    b = wait("bob's refusal", lambda: membership(bob.user_id) if membership(bob.user_id).get("membership") == "leave" else None)

    control = owner.ok("GET", f"v3/directory/room/{q('#control:' + SERVER)}")["room_id"]
    wait("the notices", lambda: len(notices(owner, control, bot)) >= 2)

    print()
    print("What happened (as Synapse reports it):")
    print(f"  @alice:{SERVER}  {a['membership']:<7} reason: {a.get('reason')}")
    print(f"  @bob:{SERVER}    {b['membership']:<7} (refused; bob may knock again) reason: {b.get('reason')}")
    print()
    print("The control room #control:localhost says:")
    for body in notices(owner, control, bot):
        print("  | " + body.replace("\n", "\n  | "))
    print(f"""
Where to look:
  - a Matrix client (Element, FluffyChat, nheko): homeserver {base}, user "owner", password "{PASSWORD}"
    (also "alice" and "bob"). In #control:{SERVER}, try: !knock help, !knock log, !knock stats, !knock rooms
  - the audit log: !knock log in the control room; knockwarden's log: {demo}/knockwarden.log
  - the policy: {demo}/policies/support.yaml (edits are picked up at once); config: {demo}/config.yaml
  - Synapse's log: {demo}/synapse.log

Synapse and knockwarden keep running. Stop them with: scripts/demo.sh stop""")


def notices(owner, room, bot):
    v = owner.ok("GET", f"v3/rooms/{q(room)}/messages?dir=f&limit=100")
    return [e["content"]["body"] for e in v.get("chunk", []) if e["type"] == "m.room.message" and e["sender"] == bot]


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: demo.py start|stop DIR")
    demo = Path(sys.argv[2]).resolve()
    stop(demo) if sys.argv[1] == "stop" else start(demo)
