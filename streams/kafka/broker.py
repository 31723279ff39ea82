"""The embedded Apache Kafka broker: a real KRaft node (broker + controller) on 127.0.0.1.

The jars come from Maven Central through `streams/kafka/pom.xml` and are cached outside the
work tree; the node runs with `java -cp 'lib/*'`. Tests, the demo and `codeclm broker` all
start Kafka through `EmbeddedBroker`, so what the tests prove is what users run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

KAFKA_VERSION = "4.3.1"
POM = Path(__file__).parent / "pom.xml"
STATE_FILE = "broker.json"


class BrokerError(RuntimeError):
    """The embedded broker could not be set up, started or stopped."""


def cache_dir() -> Path:
    return Path(os.environ.get("CODECLM_CACHE_DIR", Path.home() / ".cache" / "codeclm"))


def default_data_dir() -> Path:
    return cache_dir() / "broker"


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"`{name}` is not on PATH; the embedded Kafka broker needs it. {install_hint}")
    return path


def java_major_version(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    # `openjdk version "17.0.15"` / `java version "1.8.0_392"`
    quoted = out.split('"')[1] if '"' in out else "0"
    parts = quoted.split(".")
    return int(parts[1]) if parts[0] == "1" else int(parts[0])


def ensure_kafka_jars(log=print) -> Path:
    """Return the folder of Kafka's jars, fetching them through Maven on first use."""
    lib = cache_dir() / f"kafka-{KAFKA_VERSION}" / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib
    mvn = require_tool("mvn", "Install Apache Maven 3.6+ (Debian: `apt-get install maven`).")
    log(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {lib} (once) ...")
    tmp = lib.with_name("lib.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(
            f"mvn could not fetch the Kafka jars (exit {result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    marker.touch()
    return lib


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # A killed broker leaves its ports in TIME_WAIT; Kafka itself binds with SO_REUSEADDR.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


@dataclass
class BrokerState:
    """What survives between `broker start` and `broker stop`: kept in the data directory."""

    cluster_id: str
    port: int
    controller_port: int
    pid: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def server_properties(data_dir: Path, state: BrokerState, partitions: int) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:{state.port},CONTROLLER://127.0.0.1:{state.controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{state.port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:{state.controller_port}
log.dirs={data_dir / "kraft-logs"}
num.partitions={partitions}
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
"""


LOG4J2 = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="${sys:kafka.logs.dir}/server.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


class EmbeddedBroker:
    """One single-node KRaft Kafka, its data in `data_dir` (kept across restarts)."""

    def __init__(self, data_dir: Path | None = None, partitions: int = 4, heap: str = "768m", log=print):
        self.data_dir = Path(data_dir or default_data_dir())
        self.partitions = partitions
        self.heap = heap
        self.log = log
        self._process: subprocess.Popen | None = None

    # -- state -------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def read_state(self) -> BrokerState | None:
        try:
            return BrokerState(**json.loads(self.state_path.read_text()))
        except FileNotFoundError:
            return None

    def _write_state(self, state: BrokerState) -> None:
        self.state_path.write_text(json.dumps(asdict(state)))

    @property
    def bootstrap(self) -> str:
        state = self.read_state()
        if state is None:
            raise BrokerError(f"no broker has been set up in {self.data_dir}")
        return state.bootstrap

    def running_pid(self) -> int | None:
        state = self.read_state()
        if state and state.pid and pid_alive(state.pid):
            return state.pid
        return None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, fresh: bool = False, timeout: float = 90.0) -> BrokerState:
        """Start the node (formatting storage on first use) and wait until it answers."""
        java = require_tool("java", "Install a Java 17+ runtime (Debian: `apt-get install openjdk-17-jre-headless`).")
        if java_major_version(java) < 17:
            raise BrokerError("Kafka 4.x needs Java 17 or newer; `java -version` reports an older one.")
        if fresh:
            self.stop()
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.running_pid():
            state = self.read_state()
            assert state is not None
            self.log(f"broker already running (pid {state.pid}) on {state.bootstrap}")
            return state
        lib = ensure_kafka_jars(self.log)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self._prepare_state()
        config = self.data_dir / "server.properties"
        config.write_text(server_properties(self.data_dir, state, self.partitions))
        (self.data_dir / "log4j2.xml").write_text(LOG4J2)
        if not (self.data_dir / "kraft-logs" / "meta.properties").exists():
            self._java(
                java,
                lib,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                state.cluster_id,
                "-c",
                str(config),
            )
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        cmd = self._java_cmd(java, lib, "kafka.Kafka", str(config))
        with open(logs / "stdout.log", "ab") as out:
            self._process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        state.pid = self._process.pid
        self._write_state(state)
        self._wait_until_ready(state, timeout)
        self.log(f"broker up (pid {state.pid}) on {state.bootstrap}, data in {self.data_dir}")
        return state

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout`. Returns whether a broker was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            self.log(f"broker (pid {pid}) ignored SIGTERM for {timeout:.0f}s; killing it")
            self._kill_and_reap(pid)
        self._reap()
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash would (for tests of what survives one)."""
        pid = self.running_pid()
        if pid is not None:
            self._kill_and_reap(pid)

    def _kill_and_reap(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.1)
        self._reap()

    def _reap(self) -> None:
        """Collect our own child's exit status, so it leaves no zombie behind."""
        if self._process is not None:
            self._process.wait()
            self._process = None

    # -- helpers ---------------------------------------------------------------------------
    def _prepare_state(self) -> BrokerState:
        """Keep the ports a formatted node was given (the controller's is in its metadata)."""
        state = self.read_state()
        if state is not None and (self.data_dir / "kraft-logs" / "meta.properties").exists():
            busy = [p for p in (state.port, state.controller_port) if not port_is_free(p)]
            if busy:
                raise BrokerError(
                    f"ports {busy} of the broker in {self.data_dir} are taken; stop what holds them or start with --fresh"
                )
            return state
        return BrokerState(cluster_id=_cluster_id(), port=free_port(), controller_port=free_port())

    def _java_cmd(self, java: str, lib: Path, main: str, *args: str) -> list[str]:
        logs = self.data_dir / "logs"
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.xml'}",
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def _java(self, java: str, lib: Path, main: str, *args: str) -> None:
        result = subprocess.run(self._java_cmd(java, lib, main, *args), capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"{main} {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def _wait_until_ready(self, state: BrokerState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerError(f"the broker exited with {self._process.returncode}; see {self.data_dir / 'logs'}")
            if not port_is_free(state.port) and asyncio.run(broker_answers(state.bootstrap)):
                return
            time.sleep(0.3)
        self.stop(timeout=5)
        raise BrokerError(
            f"the broker did not answer on {state.bootstrap} within {timeout:.0f}s; see {self.data_dir / 'logs'}"
        )


def _cluster_id() -> str:
    # Kafka wants 16 random bytes, base64url without padding (22 characters). One starting
    # with "-" would be read as an option by the storage tool, so draw again.
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


async def broker_answers(bootstrap: str) -> bool:
    """Whether a Kafka broker at `bootstrap` answers a metadata request."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (TimeoutError, KafkaError, OSError):
        return False
    finally:
        await admin.close()
