"""Several rasa servers and action servers behind HAProxy, on one machine.

``make cluster REPLICAS=2`` (``python -m threadline.cluster``) starts what
``make run`` starts, N times over, behind Debian's ``haproxy``:

    clients ─► haproxy :RASA_PORT ─┬─► rasa replica 1 ─┐      ┌─► action server 1
                                   └─► rasa replica 2 ─┴─► haproxy :ACTION_PORT (loopback)
                                                                  └─► action server 2

Every replica shares Redis (conversations, atomic conversation locks,
identity, socket.io fan-out), the business database and the event broker, so
a request for a conversation may land on any replica. ``/socket.io`` is
routed by client address (engine.io's polling needs its session's server);
everything else round-robin, with health checks on each server's own health
route, and a request that cannot connect is retried on another replica.
The replicas trust the balancer's ``X-Forwarded-For`` (loopback only).
A multi-machine deployment runs the same processes (deploy/).
"""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from threadline import settings as settings_module
from threadline.stack import Stack, _wait_http, serve

HAPROXY_TEMPLATE = settings_module.PROJECT_ROOT / "deploy" / "haproxy.cfg"


def haproxy_binary() -> str:
    """Path of ``haproxy``; a clear error naming the package when it is missing."""
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if not found:
        raise RuntimeError("haproxy is not installed: sudo apt-get install haproxy (make tools does it as root)")
    return found


def _render(public_bind: str, action_bind: str, rasa_servers: str, action_servers: str, resolvers: str = "") -> str:
    return (HAPROXY_TEMPLATE.read_text()
            .replace("{{PUBLIC_BIND}}", public_bind)
            .replace("{{ACTION_BIND}}", action_bind)
            .replace("{{RASA_SERVERS}}", rasa_servers)
            .replace("{{ACTION_SERVERS}}", action_servers)
            .replace("{{RESOLVERS}}", resolvers))


def haproxy_config(public_host: str, public_port: int, rasa_ports: List[int], action_port: int,
                   action_ports: List[int]) -> str:
    """The HAProxy configuration for this machine's replicas (from deploy/haproxy.cfg)."""
    def servers(prefix: str, ports: List[int]) -> str:
        return "\n".join(f"    server {prefix}{i + 1} 127.0.0.1:{port} check" for i, port in enumerate(ports))

    return _render(f"{public_host}:{public_port}", f"127.0.0.1:{action_port}",
                   servers("rasa", rasa_ports), servers("actions", action_ports))


COMPOSE_MAX_REPLICAS = 8


def compose_haproxy_config() -> str:
    """The same configuration for deploy/compose.yml: replicas found through Docker's DNS.

    ``server-template`` reserves up to ``COMPOSE_MAX_REPLICAS`` slots per
    service and fills them from the service name's DNS records, so
    ``docker compose up --scale rasa=3`` needs no change here.
    """
    def template(prefix: str, service: str, port: int) -> str:
        return (f"    server-template {prefix} {COMPOSE_MAX_REPLICAS} {service}:{port} check "
                f"resolvers docker init-addr none")

    resolvers = ("\nresolvers docker\n    nameserver dns 127.0.0.11:53\n    hold valid 5s\n"
                 "    accepted_payload_size 8192\n")
    return _render("*:5005", "*:5055", template("rasa", "rasa", 5005), template("actions", "actions", 5055),
                   resolvers)


class Cluster(Stack):
    """N rasa replicas and N action servers behind HAProxy (same shared state as one ``Stack``)."""

    def __init__(self, replicas: int = 2, rasa_port: Optional[int] = None, action_port: Optional[int] = None,
                 env: Optional[Dict[str, str]] = None, replica_ports: Optional[List[int]] = None,
                 action_ports: Optional[List[int]] = None, **kwargs) -> None:
        super().__init__(rasa_port=rasa_port, action_port=action_port, env=env, **kwargs)
        if replicas < 1:
            raise ValueError("a cluster needs at least one replica")
        self.replicas = replicas
        self.replica_ports = replica_ports or [self.rasa_port + 1 + i for i in range(replicas)]
        self.action_ports = action_ports or [self.action_port + 1 + i for i in range(replicas)]
        trusted = [p for p in (self.env.get("THREADLINE_TRUSTED_PROXIES") or "").split(",") if p.strip()]
        self.env["THREADLINE_TRUSTED_PROXIES"] = ",".join(dict.fromkeys(trusted + ["127.0.0.1"]))
        self.settings = settings_module.Settings(self.env)
        self.rasa_processes: List[subprocess.Popen] = []

    def replica_url(self, index: int) -> str:
        """One replica, directly (tests, health)."""
        return f"http://127.0.0.1:{self.replica_ports[index]}"

    def start(self, with_rasa: bool = True) -> "Cluster":
        """Redis, database, action servers, rasa replicas, then HAProxy in front."""
        endpoints = self._prepare()  # the replicas call the actions' balancer (ACTION_SERVER_URL)
        self.endpoints_file = endpoints
        try:
            haproxy = haproxy_binary()
            started = [(port, *self.spawn_actions(port)) for port in self.action_ports]
            for port, proc, log in started:
                _wait_http(f"http://127.0.0.1:{port}/health", 120, proc, log)
            for number in range(1, min(2, self.replicas) + 1):  # one relays, the other waits for the lease
                self.start_relay(number)
            replicas = [self._spawn_replica(index) for index in range(self.replicas)]  # they load in parallel
            for index, (proc, log) in enumerate(replicas):
                _wait_http(f"http://127.0.0.1:{self.replica_ports[index]}/webhooks/webchat/", 240, proc, log)
            config = self.log_dir / f"haproxy-{self.rasa_port}.cfg"
            config.write_text(haproxy_config(self.settings.get("THREADLINE_HOST"), self.rasa_port,
                                             self.replica_ports, self.action_port, self.action_ports))
            subprocess.run([haproxy, "-c", "-q", "-f", str(config)], check=True)
            proc, log = self._spawn([haproxy, "-db", "-f", str(config)], f"haproxy-{self.rasa_port}.log")
            _wait_http(f"{self.rasa_url}/webhooks/webchat/", 60, proc, log)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn_replica(self, index: int):
        port = self.replica_ports[index]
        args = self.rasa_args(self.endpoints_file)
        args[args.index("--port") + 1] = str(port)
        args[args.index("--interface") + 1] = "127.0.0.1"  # only the balancer is public
        proc, log = self._spawn(args, f"rasa-{port}.log")
        while len(self.rasa_processes) <= index:
            self.rasa_processes.append(proc)
        self.rasa_processes[index] = proc
        return proc, log

    def start_replica(self, index: int) -> subprocess.Popen:
        """Start (or restart) rasa replica ``index`` and wait until it answers."""
        proc, log = self._spawn_replica(index)
        _wait_http(f"http://127.0.0.1:{self.replica_ports[index]}/webhooks/webchat/", 240, proc, log)
        return proc

    def kill_replica(self, index: int) -> None:
        """SIGKILL one rasa replica (the load test's fault)."""
        proc = self.rasa_processes[index]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self._mark_dead([proc])
        self.processes.remove(proc)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``make cluster``."""
    config = settings_module.get()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rasa-port", type=int, default=config.integer("RASA_PORT"))
    parser.add_argument("--action-port", type=int, default=config.integer("ACTION_PORT"))
    parser.add_argument("--compose-config", action="store_true",
                        help="print the HAProxy configuration deploy/compose.yml uses, and exit")
    args = parser.parse_args(argv)
    if args.compose_config:
        print(compose_haproxy_config(), end="")
        return 0
    cluster = Cluster(replicas=args.replicas, rasa_port=args.rasa_port, action_port=args.action_port)
    return serve(cluster, cluster.start, lambda: (
        f"\nThreadline cluster: {args.replicas} rasa replicas {cluster.replica_ports} and action servers "
        f"{cluster.action_ports} behind HAProxy at {cluster.rasa_url} (actions at {cluster.action_url}).\n"
        f"Web chat: {cluster.rasa_url}/webhooks/webchat/   Ctrl-C stops everything.\n"))


if __name__ == "__main__":
    sys.exit(main())
