"""A Ray cluster whose worker nodes live in their own Linux network namespaces.

The head runs on the host (``ray start --head`` bound to the harness's bridge address); each extra
node runs ``ip netns exec <ns> ray start --address=...`` inside its own namespace, joined to a host
bridge by a veth pair, so nodes have distinct IPs and real sockets between them. The harness can
partition a node (its veth link down: both directions, every socket), slow it (``tc netem``, when the
kernel has it), heal it, and SIGKILL its raylet.

Addresses: one private /24 per harness, ``10.210.S.0/24`` (host bridge ``.1``, nodes ``.11+``), chosen
so that no address in it is already on the host. The namespaces have no default route and the host
does not forward (we never touch ``ip_forward``): traffic only flows between the host and the nodes.

Every name starts with ``aif<pid>`` (the pid of the test process) so that cleanup never touches
anything another process made; cleanup runs from the test's finalizer and from ``atexit``, and a
later harness removes what a dead pid left behind. Token auth is on: the harness generates a token
into its temp dir and passes ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` to every process.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support import ray_head, waiting

# Node death visible in seconds instead of ~15 s for a crash and ~50 s for a partition (see
# docs/reliability.md): a partitioned node does not refuse the health check, it lets it time out,
# so the timeout counts as much as the period. The gRPC client keepalive bounds how long a call
# already in flight to a partitioned node (a task running there) waits on its half-open
# connection: Ray's default is 300 s + 120 s, during which the task is neither done nor retried
# (the shuffle scenario hung on it); Ray's servers accept pings as often as this setting says.
# The timeout is 1.5 s, not 1 s: over a 200 ms-each-way link with 5% loss one lost packet delays a
# check to ~1.0 s (Linux's retransmission timeout is the smoothed RTT + at least 200 ms), so a
# 1 s timeout failed about one check in ten and three in a row declared a slow but alive node dead
# (seen in the slow-link scenario). Two misses of 1.5 s, 250 ms apart, still declare a partitioned
# node dead sooner than three of 1 s, 500 ms apart (see docs/reliability.md).
FAST_FAILURE_CONFIG = {"health_check_period_ms": 250, "health_check_failure_threshold": 2,
                       "health_check_timeout_ms": 1500, "health_check_initial_delay_ms": 0,
                       "grpc_client_keepalive_time_ms": 2000,
                       "grpc_client_keepalive_timeout_ms": 2000}
PREFIX = f"aif{os.getpid()}"
NODE_IF = "eth0"   # the node's end of its veth pair, inside its namespace
RAY_BIN = str(Path(sys.executable).parent / "ray")


def wait_until(what: str, pred: Any, timeout_s: float = 60.0, interval_s: float = 0.05) -> Any:
    """Poll ``pred()`` until it returns something truthy (returned); AssertionError after the
    deadline. The fault tests wait on conditions with this, never on bare sleeps."""
    return waiting.until(what, pred, timeout_s, interval_s)


class Unavailable(RuntimeError):
    """Network namespaces cannot be used here (the reason is the message)."""


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc


def check_available() -> None:
    """Raise ``Unavailable`` (with the reason) unless namespaces and veth pairs work here."""
    if sys.platform != "linux":
        raise Unavailable("network namespaces need Linux")
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root (run the fault suite as root)")
    if shutil.which("ip") is None:
        raise Unavailable("the `ip` command (iproute2) is not installed")
    probe = f"{PREFIX}pr"
    try:
        _ip("ip", "netns", "add", probe)
    except RuntimeError as exc:
        raise Unavailable(f"cannot create a network namespace: {exc}") from None
    try:
        try:
            _ip("ip", "link", "add", f"{probe}0", "type", "veth", "peer", "name", f"{probe}1")
        except RuntimeError as exc:
            raise Unavailable(f"cannot create a veth pair: {exc}") from None
        _ip("ip", "link", "del", f"{probe}0", check=False)
    finally:
        _ip("ip", "netns", "del", probe, check=False)


def has_netem() -> bool:
    """Whether the kernel has the netem qdisc (delay and loss); many VM kernels leave it out."""
    name = f"{PREFIX}ne"
    _ip("ip", "link", "add", f"{name}0", "type", "veth", "peer", "name", f"{name}1", check=False)
    try:
        return _ip("tc", "qdisc", "add", "dev", f"{name}0", "root", "netem", "delay", "1ms",
                   check=False).returncode == 0
    finally:
        _ip("ip", "link", "del", f"{name}0", check=False)


def sweep_stale() -> list[str]:
    """Remove namespaces and links that a harness of a dead process left behind."""
    removed = []
    for line in _ip("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith("aif") and not _owner_alive(name):
            _ip("ip", "link", "del", name, check=False)
            removed.append(name)
    for line in _ip("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith("aif") and not _owner_alive(name):
            _kill_ns_pids(name)
            _ip("ip", "netns", "del", name, check=False)
            removed.append(name)
    for path in Path("/tmp").glob("aif*-*"):
        if not _owner_alive(path.name.split("-")[0]):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def _owner_alive(name: str) -> bool:
    # The name is aif<pid><suffix>; the suffix starts with a letter, so the leading digits are the pid.
    pid = ""
    for c in name[3:]:
        if not c.isdigit():
            break
        pid += c
    if not pid:
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_ns_pids(ns: str) -> None:
    out = _ip("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in out:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _free_subnet() -> int:
    used = _ip("ip", "-o", "addr", "show", check=False).stdout
    start = os.getpid() % 200 + 20
    for i in range(230):
        s = (start + i) % 230 + 20
        if f"10.210.{s}." not in used:
            return s
    raise Unavailable("no free 10.210.x.0/24 subnet on this host")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _killpg(proc: subprocess.Popen) -> None:
    ray_head.stop_process_groups([proc])


@dataclasses.dataclass
class Node:
    """One worker node: its namespace, veth names, IP and `ray start --block` process."""

    name: str
    ns: str
    host_if: str
    node_if: str
    ip: str
    args: list[str]
    temp_dir: Path
    process: subprocess.Popen | None = None
    node_id: str | None = None
    state: str = "up"  # up | partitioned | slow
    replaced_ids: list[str] = dataclasses.field(default_factory=list)

    def raylet_pid(self) -> int | None:
        import psutil

        if self.process is None or self.process.poll() is not None:
            return None
        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                if child.name() == "raylet":
                    return int(child.pid)
        except psutil.NoSuchProcess:
            return None
        return None


class NetnsCluster:
    """A head on the host bridge and worker nodes in namespaces. Use as a context manager or call
    ``shutdown()``; it is also registered with ``atexit``."""

    def __init__(self, *, head_cpus: int = 1, head_resources: dict[str, float] | None = None,
                 system_config: dict[str, Any] | None = None, timeout_s: float = 90.0) -> None:
        check_available()
        sweep_stale()
        self.subnet = _free_subnet()
        self.bridge = f"{PREFIX}br"
        self.host_ip = f"10.210.{self.subnet}.1"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-", dir="/tmp"))
        self.nodes: list[Node] = []
        self.head: subprocess.Popen | None = None
        self._closed = False
        self._netem: bool | None = None
        self._relays: dict[str, subprocess.Popen] = {}
        atexit.register(self.shutdown)
        try:
            self._make_bridge()
            self.token_path = self.tmp / "auth_token"
            self._generate_token()
            self.port = _free_port()
            self._start_head(head_cpus, head_resources or {},
                             system_config if system_config is not None else FAST_FAILURE_CONFIG,
                             timeout_s)
        except BaseException:
            self.shutdown()
            raise

    # -- set-up ---------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host_ip}:{self.port}"

    def env(self, temp_dir: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RAY_AUTH") and k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path),
                   RAY_USAGE_STATS_ENABLED="0", HOME=str(self.tmp / "home"),
                   PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
        if temp_dir is not None:
            env["RAY_TMPDIR"] = str(temp_dir)
        return env

    def _make_bridge(self) -> None:
        _ip("ip", "link", "add", self.bridge, "type", "bridge")
        # A fixed MAC: otherwise the bridge takes its lowest port's and changes it as nodes join.
        _ip("ip", "link", "set", self.bridge, "address", f"02:00:0a:d2:{self.subnet:02x}:01")
        _ip("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        _ip("ip", "link", "set", self.bridge, "up")

    def _generate_token(self) -> None:
        home = self.tmp / "home"
        (home / ".ray").mkdir(parents=True, exist_ok=True)
        env = self.env()
        env.pop("RAY_AUTH_TOKEN_PATH")
        env.pop("RAY_AUTH_MODE")
        subprocess.run([RAY_BIN, "get-auth-token", "--generate"], env=env, check=True,
                       capture_output=True, timeout=60)
        shutil.copy(home / ".ray" / "auth_token", self.token_path)

    def _start_head(self, cpus: int, resources: dict[str, float], system_config: dict[str, Any],
                    timeout_s: float) -> None:
        temp = self.tmp / "h"
        temp.mkdir()
        cmd = [RAY_BIN, "start", "--head", f"--node-ip-address={self.host_ip}", f"--port={self.port}",
               f"--num-cpus={cpus}", "--num-gpus=0", "--block", "--disable-usage-stats",
               "--include-dashboard=false", f"--dashboard-agent-listen-port={_free_port()}",
               f"--system-config={json.dumps(system_config)}"]
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        log = open(self.tmp / "head.log", "wb")
        self.head = subprocess.Popen(cmd, env=self.env(temp), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(self.tmp))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.head.poll() is not None:
                raise RuntimeError(f"ray start --head exited: {(self.tmp / 'head.log').read_text()[-3000:]}")
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex((self.host_ip, self.port)) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"ray start --head did not listen in {timeout_s} s")

    def add_node(self, *, cpus: int = 2, gpus: int = 0, resources: dict[str, float] | None = None,
                 object_store_bytes: int = 150 * 2**20, wait: bool = True) -> Node:
        """A worker node in a new namespace; with ``wait``, returns once Ray lists it alive."""
        idx = len(self.nodes)
        ns = f"{PREFIX}n{idx}"
        node = Node(name=f"n{idx}", ns=ns, host_if=f"{PREFIX}h{idx}", node_if=f"{PREFIX}p{idx}",
                    ip=f"10.210.{self.subnet}.{11 + idx}", args=[], temp_dir=self.tmp / f"n{idx}")
        node.args = [f"--num-cpus={cpus}", f"--num-gpus={gpus}",
                     f"--object-store-memory={object_store_bytes}"]
        if resources:
            node.args.append(f"--resources={json.dumps(resources)}")
        self.nodes.append(node)
        _ip("ip", "netns", "add", ns)
        _ip("ip", "link", "add", node.host_if, "type", "veth", "peer", "name", node.node_if)
        _ip("ip", "link", "set", node.node_if, "netns", ns)
        # The same interface name on every node (as on real machines), so that one setting such as
        # GLOO_SOCKET_IFNAME=eth0 in a job's runtime_env fits all of them.
        _ip("ip", "link", "set", node.node_if, "name", NODE_IF, ns=ns)
        node.node_if = NODE_IF
        _ip("ip", "link", "set", node.host_if, "master", self.bridge)
        _ip("ip", "link", "set", node.host_if, "up")
        _ip("ip", "addr", "add", f"{node.ip}/24", "dev", node.node_if, ns=ns)
        _ip("ip", "link", "set", node.node_if, "up", ns=ns)
        _ip("ip", "link", "set", "lo", "up", ns=ns)
        self.start_node(node)
        if wait:
            try:
                self.wait_alive(node, timeout_s=60)
            except RuntimeError:
                # Ray gives a joining node 30 s to register; on a loaded machine it can miss that
                # (seen here at load ~10): one more try, then the error stands.
                self.start_node(node)
                self.wait_alive(node, timeout_s=60)
        return node

    def start_node(self, node: Node) -> None:
        """(Re)start the node's Ray inside its namespace (a restart gets a new node id)."""
        if node.process is not None:
            _killpg(node.process)
        node.temp_dir.mkdir(exist_ok=True)
        cmd = ["ip", "netns", "exec", node.ns, RAY_BIN, "start", f"--address={self.address}",
               f"--node-ip-address={node.ip}", "--block", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={_free_port()}", *node.args]
        log = open(self.tmp / f"{node.name}.log", "ab")
        node.process = subprocess.Popen(cmd, env=self.env(node.temp_dir), stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        cwd=str(self.tmp))
        if node.node_id is not None:
            node.replaced_ids.append(node.node_id)  # a restart is a new node; never the old one
        node.node_id = None

    # -- faults ---------------------------------------------------------------------------------
    def partition(self, node: Node) -> None:
        """Cut every packet between the node and the rest (its veth link down, both ends)."""
        _ip("ip", "link", "set", node.host_if, "down")
        node.state = "partitioned"

    def slow(self, node: Node, *, delay_ms: int = 200, loss_pct: float = 5.0) -> None:
        """Delay and drop the node's packets in both directions: ``tc netem`` on both ends where
        the kernel has it, else a user-space relay (``linkrelay``) in place of the bridge port."""
        if self._netem is None:
            self._netem = has_netem()
        if self._netem:
            for dev, ns in ((node.host_if, None), (node.node_if, node.ns)):
                _ip("tc", "qdisc", "replace", "dev", dev, "root", "netem", "delay", f"{delay_ms}ms",
                    "loss", f"{loss_pct}%", ns=ns)
        else:
            self._start_relay(node, delay_ms, loss_pct)
        node.state = "slow"

    def _start_relay(self, node: Node, delay_ms: int, loss_pct: float) -> None:
        repo = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": repo}
        subprocess.run(["ip", "netns", "exec", node.ns, sys.executable, "-m", "tests.faults.linkrelay",
                        "--offloads-off", node.node_if], env=env, check=True, timeout=30, cwd=repo)
        tap = f"{PREFIX}t{node.name[1:]}"
        _ip("ip", "link", "set", node.host_if, "nomaster")
        _ip("ip", "link", "set", node.host_if, "promisc", "on", "arp", "off")
        relay = subprocess.Popen([sys.executable, "-m", "tests.faults.linkrelay", node.host_if, tap,
                                  str(delay_ms), str(loss_pct)], env=env, cwd=repo,
                                 stdout=subprocess.PIPE, stderr=open(self.tmp / "relay.log", "ab"),
                                 start_new_session=True)
        self._relays[node.name] = relay
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"link relay failed: {(self.tmp / 'relay.log').read_text()[-2000:]}")
        _ip("ip", "link", "set", tap, "master", self.bridge)
        _ip("ip", "link", "set", tap, "up")

    def heal(self, node: Node) -> None:
        """Undo ``partition`` and ``slow``."""
        relay = self._relays.pop(node.name, None)
        if relay is not None:
            _killpg(relay)  # its tap goes with it
            _ip("ip", "link", "set", node.host_if, "promisc", "off", "arp", "on")
            _ip("ip", "link", "set", node.host_if, "master", self.bridge)
        for dev, ns in ((node.host_if, None), (node.node_if, node.ns)):
            _ip("tc", "qdisc", "del", "dev", dev, "root", ns=ns, check=False)
        _ip("ip", "link", "set", node.host_if, "up")
        node.state = "up"

    def kill_raylet(self, node: Node) -> int:
        """SIGKILL the node's raylet; returns its pid."""
        pid = node.raylet_pid()
        if pid is None:
            raise RuntimeError(f"node {node.name} has no raylet running")
        os.kill(pid, signal.SIGKILL)
        return pid

    # -- views (through the driver connected in this process) -----------------------------------
    @staticmethod
    def ray_nodes() -> list[dict[str, Any]]:
        import ray

        return list(ray.nodes())

    def wait_alive(self, node: Node, timeout_s: float = 60.0) -> str:
        """Wait until Ray lists a live node at this node's IP; returns (and records) its id."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for n in self.ray_nodes():
                if (n["Alive"] and n["NodeManagerAddress"] == node.ip
                        and n["NodeID"] not in node.replaced_ids):
                    node.node_id = n["NodeID"]
                    return node.node_id
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"node {node.name} exited: {self.log(node)[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"node {node.name} ({node.ip}) not alive after {timeout_s} s")

    def wait_dead(self, node_id: str, timeout_s: float = 30.0) -> float:
        """Wait until Ray lists the node as dead; returns the seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if not any(n["NodeID"] == node_id and n["Alive"] for n in self.ray_nodes()):
                return time.monotonic() - start
            time.sleep(0.05)
        raise TimeoutError(f"node {node_id} still alive after {timeout_s} s")

    def connect_time_s(self, node: Node) -> float:
        """Seconds a TCP connect from the host to the node's raylet takes (one round trip)."""
        port = next(n["NodeManagerPort"] for n in self.ray_nodes() if n["NodeID"] == node.node_id)
        start = time.monotonic()
        with socket.create_connection((node.ip, port), timeout=30):
            return time.monotonic() - start

    def log(self, node: Node | None = None) -> str:
        path = self.tmp / (f"{node.name}.log" if node else "head.log")
        return path.read_text(errors="replace") if path.exists() else ""

    # -- teardown -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every process and remove every namespace and link this harness made (idempotent)."""
        if self._closed:
            return
        self._closed = True
        ray_head.stop_process_groups([*self._relays.values(), *(n.process for n in self.nodes if n.process is not None),
                  *([self.head] if self.head is not None else [])])
        for node in self.nodes:
            _kill_ns_pids(node.ns)
            _ip("ip", "link", "del", node.host_if, check=False)
            _ip("ip", "netns", "del", node.ns, check=False)
        _ip("ip", "link", "del", self.bridge, check=False)
        # The head's dir holds this process's driver log, which Ray's log sink writes until the
        # process exits (removing it crashes the exit): a later harness sweeps it (sweep_stale).
        for child in self.tmp.iterdir():
            if child.name != "h":
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()

    def leftovers(self) -> list[str]:
        """Namespaces and links of this harness still present (empty after ``shutdown``)."""
        links = _ip("ip", "-o", "link", "show", check=False).stdout
        spaces = _ip("ip", "netns", "list", check=False).stdout
        names = [self.bridge] + [n.host_if for n in self.nodes]
        return ([n for n in names if f" {n}:" in links or f" {n}@" in links]
                + [n.ns for n in self.nodes if n.ns in spaces.split()])

    def __enter__(self) -> NetnsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class Driver:
    """This process's Ray driver connected to a ``NetnsCluster`` with token auth; ``shutdown()``
    disconnects, restores the auth environment and stops the cluster."""

    def __init__(self, cluster: NetnsCluster) -> None:
        import ray
        from ray._private.authentication_test_utils import reset_auth_token_state

        import ainative

        self.cluster = cluster
        self._saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH",
                                                      "RAY_AUTH_TOKEN")}
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(cluster.token_path))
        reset_auth_token_state()
        # The driver's node is the head, at the bridge address (not the host's main IP).
        ray.init(address=cluster.address, _node_ip_address=cluster.host_ip, namespace="ainative",
                 log_to_driver=False)
        self.ainative = ainative.connect()  # reuses the driver just connected

    def shutdown(self) -> None:
        import ray
        from ray._private.authentication_test_utils import reset_auth_token_state

        from ainative.cluster import local

        try:
            if ray.is_initialized():
                ray.shutdown()
        finally:
            local._CURRENT = None
            for k, v in self._saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            reset_auth_token_state()
            self.cluster.shutdown()
