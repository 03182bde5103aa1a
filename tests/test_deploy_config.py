"""The deployment files hold what docs/OPERATIONS.md and docs/SECURITY.md promise:
deploy/docker-compose.yml is valid Compose (the vendored compose-spec schema) and wired as intended
(two uvicorn web replicas for HTTP and a uvicorn for the WebSockets, one worker, exactly one beat,
the background processes at a lower CPU weight, PgBouncer in transaction mode in front of
PostgreSQL, Redis with AOF and a password, health checks or start conditions, nginx off the backend
network, each service given only the secrets it uses, the app's database role no superuser); the
nginx and PgBouncer templates render into configs their own programs accept, and run: nginx with TLS,
the HTTP redirect, security headers on every answer, per-address limits and /readyz and /metrics on
the internal server only; PgBouncer with SCRAM, the app's database only and an admin of its own; the
image runs as a non-root user, and .env.example lists every setting without secrets."""

import configparser
import json
import os
import re
import secrets
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from pathlib import Path

import dj_database_url
import httpx
import jsonschema
import psycopg
import pytest
import yaml

from tests import processes

ROOT = processes.ROOT
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"

# Which compose services may hold each secret of .env (interpolated into their environment,
# command or health check): each only where it is used.
SECRET_HOLDERS = {
    # Django refuses to start without it with DEBUG off; Flower runs without Django.
    "SECRET_KEY": {"migrate", "web", "ws", "worker", "beat"},
    # A socket signs in with a JWT or the pages' session cookie: `ws` verifies both.
    "JWT_SIGNING_KEY": {"web", "ws"},
    "SECRET_KEY_FALLBACKS": {"web", "ws"},
    # PostgreSQL's superuser: PostgreSQL alone.
    "POSTGRES_PASSWORD": {"postgres"},
    # The app's role: created by postgres' init script, PgBouncer logs in with it, the app uses it.
    "FLASHBID_DB_PASSWORD": {"postgres", "pgbouncer", "migrate", "web", "ws", "worker"},
    "PGBOUNCER_ADMIN_PASSWORD": {"pgbouncer"},
    # beat and Flower talk to the broker; migrate touches no Redis.
    "REDIS_PASSWORD": {"redis", "web", "ws", "worker", "beat", "flower"},
    "FLOWER_BASIC_AUTH": {"flower"},
    # The mail server's password, in the URL: the worker sends the result mail, nobody else.
    "EMAIL_URL": {"worker"},
}
# Settings of the README's table that compose deliberately does not pass to any container.
NOT_PASSED = {
    "FLASHBID_ADMIN_PASSWORD": "seed_demo's; compose seeds nothing",
    "STATIC_ROOT": "the image's collectstatic put the files in place",
    "FLASHBID_RUNTIME_DIR": "development's generated key; compose requires SECRET_KEY",
    # Secure unless loosened; compose never loosens them (nginx redirects HTTP to HTTPS itself).
    "SESSION_COOKIE_SECURE": "secure by default", "CSRF_COOKIE_SECURE": "secure by default",
    "SECURE_SSL_REDIRECT": "on by default",
    "REDIS_CLUSTER": "the cluster overlay (docker-compose.cluster.yml) sets it with the cluster's REDIS_URL",
    "FLASHBID_WEB_PROCESSES": "make up's (deploy/Procfile); compose runs one process per container and scales replicas",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _binary(name: str) -> str:
    path = shutil.which(name) or next((p for d in ("/usr/sbin", "/sbin") if os.path.exists(p := f"{d}/{name}")), None)
    if path is None:
        pytest.fail(f"{name} is not installed: run the suite through deploy/test.sh, which installs it")
    return path


def _command(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else command


def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def _interpolated(value) -> set[str]:
    """The .env variables a compose value interpolates (`${NAME...}`)."""
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", json.dumps(value)))


def _resolved(value: str, dotenv: dict[str, str] | None = None) -> str:
    """A compose value as `docker compose` interpolates it: `${NAME:-default}` from `dotenv` or its
    default, `${NAME:?message}` from `dotenv` (a placeholder when absent), `$$` a literal `$`."""
    dotenv = dotenv or {}

    def one(match: re.Match) -> str:
        name, how, rest = match.group(1), match.group(2), match.group(3)
        if dotenv.get(name):
            return dotenv[name]
        return rest if how == ":-" else f"<{name}>" if how == ":?" else ""

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:[-?])([^}]*))?\}", one, str(value)).replace("$$", "$")


def _networks(service: dict) -> set[str]:
    networks = service.get("networks", [])
    return set(networks if isinstance(networks, list) else networks.keys())


def _render(template: Path, out: Path, env: dict[str, str]) -> str:
    subprocess.run(["sh", str(DEPLOY / "render.sh"), str(template), str(out)],
                   env={"PATH": os.environ["PATH"], **env}, check=True)
    return out.read_text()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    subprocess.run(["sh", str(DEPLOY / "self-signed-cert.sh"), str(directory), "localhost", "127.0.0.1"],
                   check=True, capture_output=True)
    return directory / "cert.pem", directory / "key.pem"


def _nginx_test(conf: Path, tmp_path: Path) -> None:
    check = subprocess.run([_binary("nginx"), "-t", "-c", str(conf), "-e", str(tmp_path / "error-t.log")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def _local_nginx_env(tmp_path: Path, *, upstream: int, http: int, https: int, internal: int,
                     exempt: str = "") -> dict[str, str]:
    """The template's placeholders for an nginx run by this test as the current user."""
    cert, key = _self_signed(tmp_path / "tls")
    for sub in ("run", "logs", "static"):
        (tmp_path / sub).mkdir(exist_ok=True)
    (tmp_path / "static" / "app.css").write_text("body {}\n")
    return {
        "NGINX_LISTEN": f"127.0.0.1:{http}", "NGINX_TLS_LISTEN": f"127.0.0.1:{https}",
        "NGINX_HTTPS_PUBLIC_PORT": str(https), "NGINX_INTERNAL_LISTEN": f"127.0.0.1:{internal}",
        "NGINX_TLS_CERT": str(cert), "NGINX_TLS_KEY": str(key), "NGINX_HSTS_MAX_AGE": "300",
        "NGINX_HSTS_INCLUDE_SUBDOMAINS": "true", "NGINX_HSTS_PRELOAD": "false",
        "NGINX_LIMIT_EXEMPT": exempt, "NGINX_PLAIN_HTTP_LISTEN": "",
        "NGINX_UPSTREAM_SERVERS": f"server 127.0.0.1:{upstream};",
        "NGINX_WS_UPSTREAM_SERVERS": f"server 127.0.0.1:{upstream};", "NGINX_RESOLVER": "127.0.0.1",
        "NGINX_STATIC_ROOT": str(tmp_path / "static"),
        "NGINX_USER": f"{subprocess.check_output(['id', '-un'], text=True).strip()} "
                      f"{subprocess.check_output(['id', '-gn'], text=True).strip()}",
        "NGINX_RUNTIME_DIR": str(tmp_path / "run"), "NGINX_LOG_DIR": str(tmp_path / "logs"),
    }


class _Upstream(socketserver.ThreadingTCPServer):
    """A stand-in for the web processes: answers every request with 200 and a JSON echo of what
    nginx sent (path, Host, X-Forwarded-Proto), plus the headers the app itself sets (which nginx
    must replace: X-Frame-Options, HSTS; or keep: a Content-Security-Policy on /own-csp); answers a
    WebSocket upgrade with 101 and holds the connection open."""

    daemon_threads = True
    allow_reuse_address = True

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            while True:
                head = []
                while (line := self.rfile.readline()) not in (b"\r\n", b""):
                    head.append(line.decode("latin-1").rstrip("\r\n"))
                if not head:
                    return
                path = head[0].split()[1]
                headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:])}
                self.rfile.read(int(headers.get("content-length", 0)))
                if headers.get("upgrade", "").lower() == "websocket":
                    self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                     b"Connection: Upgrade\r\n\r\n")
                    self.wfile.flush()
                    self.rfile.read()  # held until nginx closes it
                    return
                body = json.dumps({"path": path, "host": headers.get("host"),
                                   "proto": headers.get("x-forwarded-proto")}).encode()
                extra = b"Content-Security-Policy: default-src 'none'\r\n" if path == "/own-csp" else b""
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"X-Frame-Options: SAMEORIGIN\r\nStrict-Transport-Security: max-age=1\r\n"
                                 b"X-Request-ID: from-the-app\r\n" + extra
                                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                self.wfile.flush()

    def __init__(self):
        super().__init__(("127.0.0.1", 0), self.Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def nginx_running(tmp_path):
    """The template rendered as the scale-out renders it and run by nginx (TLS with a throwaway
    self-signed certificate) in front of the stand-in upstream. Yields a function that starts one
    (optionally with NGINX_LIMIT_EXEMPT) and returns its ports and an SSL context trusting it."""
    upstream, started = _Upstream(), []

    def start(exempt: str = "") -> dict:
        n = len(started)
        base = tmp_path / f"nginx{n}"
        base.mkdir()
        ports = {"http": processes.free_port(), "https": processes.free_port(), "internal": processes.free_port()}
        env = _local_nginx_env(base, upstream=upstream.port, exempt=exempt, **ports)
        conf = base / "nginx.conf"
        _render(DEPLOY / "nginx.conf", conf, env)
        process = processes.Process(f"nginx{n}", [_binary("nginx"), "-c", str(conf), "-e",
                                                   str(base / "logs" / "error.log"), "-g", "daemon off;"],
                                    dict(os.environ), base)
        started.append(process)
        for port in ports.values():
            processes.wait_for_port(port, process, timeout=15)
        return {**ports, "ssl": ssl.create_default_context(cafile=env["NGINX_TLS_CERT"])}

    try:
        yield start
    finally:
        for process in started:
            process.stop()
        upstream.shutdown()
        upstream.server_close()


# --- Compose ------------------------------------------------------------------------------------

def test_compose_file_is_valid_compose_spec(compose):
    schema = json.loads((DEPLOY / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_runs_two_web_replicas_one_worker_and_exactly_one_beat(compose):
    services = compose["services"]
    beats = [name for name, s in services.items() if "beat" in _command(s)]
    workers = [name for name, s in services.items() if "worker" in _command(s)]
    assert beats == ["beat"] and services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert workers == ["worker"] and services["worker"].get("deploy", {}).get("replicas", 1) == 1
    # HTTP on uvicorn, without an access log (nginx keeps one) or WebSockets; the sockets on a
    # uvicorn of their own, without per-message deflate, the client address from nginx's header.
    web, ws = _command(services["web"]), _command(services["ws"])
    assert services["web"]["deploy"]["replicas"] == 2
    assert web[0] == "uvicorn" and web[-1] == "flashbid.asgi:application"
    assert {"--no-access-log", "--proxy-headers"} <= set(web) and web[web.index("--ws") + 1] == "none"
    assert ws[0] == "uvicorn" and ws[-1] == "flashbid.asgi:application"
    assert {"--no-access-log", "--proxy-headers"} <= set(ws) and ws[ws.index("--ws") + 1] == "websockets-sansio"
    assert ws[ws.index("--ws-per-message-deflate") + 1] == "false"
    # Our HTTP protocol (a response's head and body in one write: flashbid/server.py), as make up runs.
    assert web[web.index("--http") + 1] == ws[ws.index("--http") + 1] == "flashbid.server:HttpProtocol"
    # The background processes yield the CPU to the web processes on a busy host.
    for name in ("worker", "beat", "flower"):
        assert services[name]["cpu_shares"] < 1024, name


def test_web_and_worker_reach_postgresql_through_pgbouncer_without_a_django_pool(compose):
    services = compose["services"]
    for name in ("web", "ws", "worker"):
        environment = services[name]["environment"]
        assert environment["DATABASE_POOL"] == "false", name
        assert "@pgbouncer:6432/" in environment["DATABASE_URL"], name
    # Migrations (DDL) go straight to PostgreSQL, once, before anything else starts.
    assert "@postgres:5432/" in services["migrate"]["environment"]["DATABASE_URL"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "ws", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    pgbouncer = services["pgbouncer"]
    assert "/flashbid/pgbouncer.ini" in {v.split(":")[1] for v in pgbouncer["volumes"]}
    assert pgbouncer["environment"]["PGBOUNCER_DB_HOST"] == "postgres"


def test_compose_keeps_nginx_off_the_backend_network(compose):
    services, networks = compose["services"], compose["networks"]
    assert _networks(services["nginx"]) == {"edge"}
    # The data stores live on the backend network only, which has no route out.
    assert networks["backend"].get("internal") is True
    for name in ("postgres", "pgbouncer", "redis"):
        assert _networks(services[name]) == {"backend"}, name
        assert "ports" not in services[name], f"{name} must not be published"
    assert _networks(services["web"]) == _networks(services["ws"]) == {"edge", "backend"}
    for name in ("migrate", "worker", "beat", "flower"):
        assert "backend" in _networks(services[name]) and "edge" not in _networks(services[name]), name
    # The one way out besides nginx: the worker's to the mail server.
    assert [name for name, s in services.items() if "mail" in _networks(s)] == ["worker"]
    assert "internal" not in networks["mail"] and "ports" not in services["worker"]
    assert not any("network_mode" in s for s in services.values())


def test_compose_gives_each_service_only_the_secrets_it_uses(compose):
    services = compose["services"]
    assert not any("env_file" in s for s in services.values()), "no env_file: each service is given its settings"
    holders = {secret: set() for secret in SECRET_HOLDERS}
    for name, service in services.items():
        used = _interpolated({k: service.get(k) for k in ("environment", "command", "entrypoint", "healthcheck")})
        for secret in used & set(holders):
            holders[secret].add(name)
    assert holders == SECRET_HOLDERS
    # nginx: not one secret of the app, only its own certificate files.
    assert not _interpolated(services["nginx"]["environment"]) - {
        "FLASHBID_HTTPS_PORT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD"}
    # Flower watches the broker and nothing else (no Django project: no SECRET_KEY, no database).
    assert set(services["flower"]["environment"]) == {"DEBUG", "CELERY_BROKER_URL", "FLOWER_BASIC_AUTH"}
    assert "-A" not in _command(services["flower"])
    # beat publishes ticks: no database, no engine Redis.
    assert not {"DATABASE_URL", "REDIS_URL"} & set(services["beat"]["environment"])


def test_every_documented_setting_reaches_the_containers(compose):
    """No env_file: a setting of the README's table that compose does not pass by name would
    silently never reach a container."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):]
    table = table[:table.index("\n## ", 1)]
    documented = set(re.findall(r"^\| `([A-Z_]+)`", table, flags=re.M)) | set(re.findall(r"/ `([A-Z_]+)`", table))
    services = compose["services"]
    passed = {name for s in ("web", "worker", "flower") for name in services[s]["environment"]}
    missing = documented - passed - set(NOT_PASSED)
    assert not missing, (f"pass {sorted(missing)} in deploy/docker-compose.yml (x-app-settings, or the service "
                         "that uses it), or list it in NOT_PASSED with the reason")


def test_redis_requires_a_password_and_every_redis_url_carries_it(compose):
    services = compose["services"]
    redis = services["redis"]
    command = " ".join(_command(redis))
    assert re.search(r"redis-server /usr/local/etc/redis/redis\.conf --requirepass \"\$\$REDIS_PASSWORD\"", command)
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")  # no default, no empty
    assert "REDISCLI_AUTH" in json.dumps(redis["healthcheck"])
    urls = [(name, key, value) for name, s in services.items() for key, value in (s.get("environment") or {}).items()
            if str(value).startswith("redis://")]
    assert {key for _, key, _ in urls} >= {"REDIS_URL", "CELERY_BROKER_URL", "CHANNEL_LAYER_URL", "CACHE_URL"}
    for name, key, value in urls:
        assert value.startswith("redis://:${REDIS_PASSWORD:?") and value.endswith("@redis:6379/0"), (name, key)


# --- The cluster overlay (docker-compose.cluster.yml) ----------------------------------------------

CLUSTER_FILE = DEPLOY / "docker-compose.cluster.yml"


def _compose_merged(base: dict, overlay: dict) -> dict:
    """`docker compose -f base -f overlay`'s model, as far as these files use it: mappings merge key
    by key (services, environment, depends_on), anything else the overlay gives replaces."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {**base, **{k: _compose_merged(base[k], v) if k in base else v for k, v in overlay.items()}}
    return overlay


@pytest.fixture(scope="module")
def cluster_overlay() -> dict:
    return yaml.safe_load(CLUSTER_FILE.read_text())


def test_the_cluster_overlay_and_the_merged_file_are_valid_compose_spec(compose, cluster_overlay):
    validator = jsonschema.Draft7Validator(json.loads((DEPLOY / "compose-spec.json").read_text()))
    for model in (cluster_overlay, _compose_merged(compose, cluster_overlay)):
        errors = sorted(validator.iter_errors(model), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_cluster_overlay_puts_the_engine_on_three_masters_and_the_rest_on_the_plain_redis(
        compose, cluster_overlay):
    merged = _compose_merged(compose, cluster_overlay)
    services = merged["services"]
    nodes = ["redis-node-1", "redis-node-2", "redis-node-3"]
    for name in nodes:
        node = services[name]
        command = " ".join(_command(node))
        for part in ("redis-server /usr/local/etc/redis/redis.conf", '--requirepass "$$REDIS_PASSWORD"',
                     "--cluster-enabled yes", "--cluster-config-file /data/nodes.conf",
                     '--cluster-announce-hostname "$$REDIS_NODE_NAME"', "--cluster-preferred-endpoint-type hostname"):
            assert part in command, (name, part)
        assert node["environment"]["REDIS_NODE_NAME"] == name
        mounted = {v.split(":")[1]: v.split(":")[0] for v in node["volumes"]}
        assert mounted["/usr/local/etc/redis/redis.conf"] == "./redis.conf"  # AOF everysec, noeviction
        assert mounted["/data"] == name and name in merged["volumes"]
        assert _networks(node) == {"backend"}
    init = services["redis-cluster-init"]
    assert _command(init) == ["sh", "/flashbid/redis-cluster.sh", "create", *(f"{n}:6379" for n in nodes)]
    assert "./redis-cluster.sh:/flashbid/redis-cluster.sh:ro" in init["volumes"]
    assert init["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert {n: c["condition"] for n, c in init["depends_on"].items()} == dict.fromkeys(nodes, "service_healthy")
    for name in ("web", "ws", "worker"):  # the HTTP tier, the WebSocket tier, the worker
        environment = services[name]["environment"]
        assert environment["REDIS_CLUSTER"] == "true"
        assert environment["REDIS_URL"] == "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis-node-1:6379/0"
        for key in ("CELERY_BROKER_URL", "CHANNEL_LAYER_URL", "CACHE_URL"):  # kombu, channels-redis, django-redis
            assert environment[key].endswith("@redis:6379/0"), (name, key)
        depends = services[name]["depends_on"]
        assert depends["redis-cluster-init"] == {"condition": "service_completed_successfully"}
        assert {"migrate", "pgbouncer", "redis"} <= set(depends)  # the base file's stay
    # beat, Flower and migrate keep away from the engine's state.
    for name in ("beat", "flower", "migrate"):
        assert "REDIS_URL" not in services[name]["environment"] and "REDIS_CLUSTER" not in services[name]["environment"]
    holders = {name for name, service in cluster_overlay["services"].items()
               if "REDIS_PASSWORD" in _interpolated(service)}
    assert holders == {*nodes, "redis-cluster-init", "web", "ws", "worker"}


def test_redis_runs_deploy_redis_conf_with_aof_everysec(compose):
    redis = compose["services"]["redis"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in redis["volumes"]}
    assert mounted["/usr/local/etc/redis/redis.conf"] == "./redis.conf"
    assert mounted["/data"] in compose["volumes"]  # the AOF lives on a named volume
    settings = dict(line.split(None, 1) for line in (DEPLOY / "redis.conf").read_text().splitlines()
                    if line.strip() and not line.startswith("#"))
    assert settings["appendonly"] == "yes" and settings["appendfsync"] == "everysec"
    assert "requirepass" not in settings  # the password is no file's in the repository


def test_the_app_database_role_is_not_the_superuser(compose):
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] == "postgres"
    assert "/docker-entrypoint-initdb.d/" in " ".join(services["postgres"]["volumes"])
    assert any(v.startswith("./postgres-init.sh:") for v in services["postgres"]["volumes"])
    for name in ("migrate", "web", "worker"):
        url = services[name]["environment"]["DATABASE_URL"]
        assert url.startswith("postgres://${FLASHBID_DB_USER:-flashbid}:${FLASHBID_DB_PASSWORD:?"), name
    pgbouncer = services["pgbouncer"]["environment"]
    assert pgbouncer["PGBOUNCER_APP_USER"] == "${FLASHBID_DB_USER:-flashbid}"
    assert pgbouncer["PGBOUNCER_ADMIN_USER"] != pgbouncer["PGBOUNCER_APP_USER"]
    example = _env_example()
    assert example["FLASHBID_DB_USER"] not in ("", "postgres") and example["PGBOUNCER_ADMIN_USER"] not in (
        "", example["FLASHBID_DB_USER"])


def test_every_service_has_a_healthcheck_or_starts_on_conditions(compose):
    services = compose["services"]
    healthy = {name for name, s in services.items() if s.get("healthcheck") and not s["healthcheck"].get("disable")}
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for target, how in depends_on.items():
            wanted = "service_completed_successfully" if target == "migrate" else "service_healthy"
            assert how == {"condition": wanted}, (name, target, how)
            assert target == "migrate" or target in healthy, f"{name} waits for {target}, which has no healthcheck"
        assert name in healthy or depends_on, f"{name}: neither a healthcheck nor start conditions"
    assert healthy >= {"postgres", "pgbouncer", "redis", "web", "ws", "worker", "flower", "nginx"}


# --- nginx --------------------------------------------------------------------------------------

def test_nginx_fronts_the_web_replicas_with_tls_websocket_upgrade_and_request_ids(compose, tmp_path):
    nginx = compose["services"]["nginx"]
    assert nginx["depends_on"] == {"web": {"condition": "service_healthy"}, "ws": {"condition": "service_healthy"}}
    assert nginx["environment"]["NGINX_UPSTREAM_SERVERS"].startswith("server web:8000")
    assert nginx["environment"]["NGINX_WS_UPSTREAM_SERVERS"].startswith("server ws:8000")
    assert nginx["environment"]["NGINX_LIMIT_EXEMPT"] == "" and nginx["environment"]["NGINX_PLAIN_HTTP_LISTEN"] == ""
    mounted = {v.rsplit(":", 2)[1]: v.rsplit(":", 2)[0] for v in nginx["volumes"]}
    assert mounted[nginx["environment"]["NGINX_TLS_CERT"]] == "${TLS_CERT_FILE:?set TLS_CERT_FILE in .env}"
    assert mounted[nginx["environment"]["NGINX_TLS_KEY"]] == "${TLS_KEY_FILE:?set TLS_KEY_FILE in .env}"
    # The internal listener is published on the host's loopback only; HTTP and HTTPS to the world.
    ports = {p.rsplit(":", 1)[1]: p for p in nginx["ports"]}
    assert set(ports) == {"80", "443", "8081"} and ports["8081"].startswith("127.0.0.1:")
    # Every placeholder of the template is set by the compose service.
    env = {k: _resolved(v) for k, v in nginx["environment"].items()}
    text = _render(DEPLOY / "nginx.conf", tmp_path / "nginx.conf", env)
    websocket = text[text.index("location /ws/"):]
    websocket = websocket[:websocket.index("}")]
    for line in ("proxy_pass http://flashbid_ws;",
                 'proxy_set_header Upgrade $http_upgrade;', 'proxy_set_header Connection "upgrade";',
                 "proxy_set_header X-Request-ID $flashbid_request_id;",
                 "proxy_set_header X-Forwarded-For $remote_addr;", "limit_conn flashbid_sockets"):
        assert line in websocket, line
    assert "add_header X-Request-ID $flashbid_request_id always;" in text
    assert "alias /srv/static/;" in text and "server web:8000 resolve;" in text and "server ws:8000 resolve;" in text
    # Whatever X-Forwarded-For a client sends, uvicorn reads the address nginx saw (login limits).
    assert "$proxy_add_x_forwarded_for" not in text
    assert "listen 443 ssl default_server;" in text and "ssl_certificate /etc/flashbid/tls/cert.pem;" in text
    # nginx itself accepts the compose rendering (with this machine's user, paths and a throwaway
    # certificate in place of the container's; nginx 1.22 here has no `resolve`).
    local = _local_nginx_env(tmp_path, upstream=1, http=1, https=1, internal=1)
    overrides = {k: local[k] for k in ("NGINX_TLS_CERT", "NGINX_TLS_KEY", "NGINX_USER", "NGINX_RUNTIME_DIR",
                                       "NGINX_LOG_DIR", "NGINX_STATIC_ROOT")}
    _render(DEPLOY / "nginx.conf", tmp_path / "compose-nginx.conf",
            {**env, **overrides, "NGINX_UPSTREAM_SERVERS": "server web:8000;",
             "NGINX_WS_UPSTREAM_SERVERS": "server ws:8000;"})
    (tmp_path / "compose-nginx.conf").write_text((tmp_path / "compose-nginx.conf").read_text()
                                                 .replace("server web:8000;", "server 127.0.0.1:8000;")
                                                 .replace("server ws:8000;", "server 127.0.0.1:8001;"))
    _nginx_test(tmp_path / "compose-nginx.conf", tmp_path)


def test_scale_out_renders_an_nginx_config_that_nginx_accepts(tmp_path):
    env = {**os.environ, "SCALE_OUT_DIR": str(tmp_path / "run"), "SCALE_OUT_WEB_PORTS": "18201 18202",
           "SCALE_OUT_WS_PORTS": "18211", "STATIC_ROOT": str(tmp_path / "static")}
    rendered = subprocess.run([str(DEPLOY / "scale-out.sh"), "render"], cwd=ROOT, env=env, check=True,
                              capture_output=True, text=True, timeout=60).stdout.split()
    conf = Path(rendered[0])
    text = conf.read_text()
    assert "server 127.0.0.1:18201" in text and "server 127.0.0.1:18202" in text
    websocket = text[text.index("upstream flashbid_ws"):]
    assert "server 127.0.0.1:18211" in websocket[:websocket.index("}")]
    # TLS with the self-signed pair the script made in its runtime dir (the key readable by its owner only).
    assert f"ssl_certificate {tmp_path / 'run' / 'tls' / 'cert.pem'};" in text
    assert (tmp_path / "run" / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    _nginx_test(conf, tmp_path)
    pgbouncer = configparser.ConfigParser(interpolation=None)
    pgbouncer.read(rendered[1])
    assert pgbouncer["pgbouncer"]["pool_mode"] == "transaction"
    assert pgbouncer["pgbouncer"]["auth_type"] == "scram-sha-256"
    assert list(pgbouncer["databases"]) == [dj_database_url.parse(os.environ["DATABASE_URL"])["NAME"]]


def test_nginx_redirects_http_and_puts_security_headers_on_every_https_answer(nginx_running):
    nginx = nginx_running()
    with httpx.Client(timeout=10) as plain:
        redirect = plain.get(f"http://127.0.0.1:{nginx['http']}/api/sessions?status=active")
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"https://127.0.0.1:{nginx['https']}/api/sessions?status=active"
    assert "strict-transport-security" not in redirect.headers  # meaningless (and ignored) over HTTP
    with httpx.Client(base_url=f"https://127.0.0.1:{nginx['https']}", verify=nginx["ssl"], timeout=10) as https:
        answers = {
            "api": https.get("/api/sessions"),  # the app's answer (which sets weaker frame and HSTS headers)
            "static": https.get("/static/app.css"),  # nginx's own
            "not found": https.get("/static/nope.css"),  # an nginx error
        }
        own_csp = https.get("/own-csp")
        echoed = answers["api"].json()
    for what, answer in answers.items():
        headers = answer.headers
        assert headers.get_list("strict-transport-security") == ["max-age=300; includeSubDomains"], what
        assert headers.get_list("x-frame-options") == ["DENY"], what
        assert headers.get_list("x-content-type-options") == ["nosniff"], what
        assert "frame-ancestors 'none'" in headers["content-security-policy"], what
        assert len(headers.get_list("x-request-id")) == 1, what
    assert answers["api"].status_code == 200 and answers["not found"].status_code == 404
    # The app's own Content-Security-Policy is kept, not doubled.
    assert own_csp.headers.get_list("content-security-policy") == ["default-src 'none'"]
    # The app learns the request came over HTTPS.
    assert echoed["proto"] == "https"


def test_readyz_and_metrics_only_on_the_internal_server(nginx_running):
    nginx = nginx_running()
    with httpx.Client(base_url=f"https://127.0.0.1:{nginx['https']}", verify=nginx["ssl"], timeout=10) as https:
        for path in ("/readyz", "/metrics", "/%6detrics", "/./readyz", "/readyz?verbose=1"):
            assert https.get(path).status_code == 404, path  # the upstream would have answered 200
        assert https.get("/healthz").status_code == 200  # liveness stays public (load balancers)
    with httpx.Client(base_url=f"http://127.0.0.1:{nginx['internal']}", timeout=10) as internal:
        for path in ("/readyz", "/metrics"):
            answer = internal.get(path, headers={"Host": "nginx:8081"})
            # ... under a name ALLOWED_HOSTS holds, whatever name the prober used.
            assert answer.status_code == 200 and answer.json() == {"path": path, "host": "127.0.0.1", "proto": None}
        assert internal.get("/nginx-health").text == "ok\n"
        assert internal.get("/api/sessions").status_code == 404  # nothing else


def _post_until_refused(client: httpx.Client, path: str, tries: int) -> list[int]:
    return [client.post(path, json={}).status_code for _ in range(tries)]


def test_nginx_limits_password_forms_and_floods_but_not_a_bidder(nginx_running):
    nginx = nginx_running()
    with httpx.Client(base_url=f"https://127.0.0.1:{nginx['https']}", verify=nginx["ssl"], timeout=10) as https:
        # Password forms: a burst of 10, then refused (429 with the contract's body and Retry-After).
        statuses = _post_until_refused(https, "/api/auth/login", 14)
        assert statuses[:10] == [200] * 10 and statuses[-1] == 429, statuses
        refused = https.post("/admin/login/", data={})  # the same bucket, whichever form
        assert https.post("/password/reset/", data={}).status_code == 429  # the reset's mail too
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json() == {"detail": "Too many requests from your address; retry in a moment.",
                                  "code": "rate_limited"}
        assert refused.headers["strict-transport-security"] and refused.headers["x-frame-options"] == "DENY"
        # Reading the forms is not counted.
        assert {https.get("/login/").status_code for _ in range(20)} == {200}
        # A bidder bids far below the API's per-address rate (the app limits bids per bidder):
        # 150 requests at once pass ...
        assert {https.post("/api/sessions/s/bids", json={"price": "1"}).status_code for _ in range(150)} == {200}
        # ... a flood from one address does not.
        assert 429 in {https.get("/api/sessions").status_code for _ in range(400)}


def test_nginx_caps_websockets_per_address(nginx_running):
    nginx = nginx_running()
    sockets = []

    def upgrade() -> bytes:
        raw = socket.create_connection(("127.0.0.1", nginx["https"]), timeout=10)
        conn = nginx["ssl"].wrap_socket(raw, server_hostname="localhost")
        conn.sendall(b"GET /ws/sessions/s/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n\r\n")
        sockets.append(conn)
        return conn.recv(4096).split(b"\r\n", 1)[0]

    try:
        assert {upgrade() for _ in range(100)} == {b"HTTP/1.1 101 Switching Protocols"}
        assert upgrade() == b"HTTP/1.1 429 Too Many Requests"
        sockets.pop().close()
        sockets.pop().close()  # one held socket less: room for one more
        time.sleep(0.3)
        assert upgrade() == b"HTTP/1.1 101 Switching Protocols"
    finally:
        for conn in sockets:
            conn.close()


def test_nginx_limit_exemption_for_a_load_generator(nginx_running):
    nginx = nginx_running(exempt="127.0.0.1 1;")
    with httpx.Client(base_url=f"https://127.0.0.1:{nginx['https']}", verify=nginx["ssl"], timeout=10) as https:
        assert set(_post_until_refused(https, "/api/auth/login", 30)) == {200}


# --- PgBouncer and the app's database role ----------------------------------------------------------

def test_pgbouncer_config_pools_by_transaction_for_the_app_database_only():
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str  # keep the placeholder's case
    config.read_string((DEPLOY / "pgbouncer.ini").read_text())
    assert config["pgbouncer"]["pool_mode"] == "transaction"
    assert list(config["databases"]) == ["${PGBOUNCER_DB_NAME}"]  # no "*": no other database served
    assert config["pgbouncer"]["auth_type"] == "scram-sha-256"
    assert config["pgbouncer"]["admin_users"] == config["pgbouncer"]["stats_users"] == "${PGBOUNCER_ADMIN_USER}"


@pytest.fixture
def app_role():
    """deploy/postgres-init.sh run against the local PostgreSQL (as the image runs it): a role and
    a database of their own, dropped afterwards."""
    name = f"fbdeploy_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    env = {"PATH": os.environ["PATH"], "PGHOST": "127.0.0.1", "PGPORT": "5432", "POSTGRES_USER": "postgres",
           "FLASHBID_DB_USER": name, "FLASHBID_DB_PASSWORD": password, "FLASHBID_DB_NAME": name}
    done = subprocess.run(["sh", str(DEPLOY / "postgres-init.sh")], env=env, capture_output=True, text=True, timeout=60)
    try:
        assert done.returncode == 0, done.stderr
        yield name, password
    finally:
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_postgres_init_makes_a_role_that_owns_the_app_database_and_nothing_more(app_role):
    name, _ = app_role
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as admin:
        role = admin.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin"
                             " FROM pg_roles WHERE rolname = %s", [name]).fetchone()
        owner, acl = admin.execute("SELECT pg_get_userbyid(datdba), datacl::text FROM pg_database WHERE datname = %s",
                                   [name]).fetchone()
    assert role == (False, False, False, False, False, True)
    assert owner == name and acl == f"{{{name}=CTc/{name}}}"  # PUBLIC may not even connect
    # The superuser's name is refused as the app's role.
    refused = subprocess.run(["sh", str(DEPLOY / "postgres-init.sh")], capture_output=True, text=True, env={
        "PATH": os.environ["PATH"], "PGHOST": "127.0.0.1", "FLASHBID_DB_USER": "postgres",
        "FLASHBID_DB_PASSWORD": "x", "FLASHBID_DB_NAME": "x"})
    assert refused.returncode == 2 and "must not be the superuser" in refused.stderr


def test_the_app_role_migrates_its_database(app_role):
    name, password = app_role
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50),
           "DATABASE_URL": f"postgres://{name}:{password}@127.0.0.1:5432/{name}", "DATABASE_POOL": "false"}
    migrate = subprocess.run([str(processes.BIN / "python"), "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=180)
    assert migrate.returncode == 0, migrate.stderr[-3000:]


def test_rendered_pgbouncer_serves_the_app_role_with_scram_and_keeps_the_console_for_its_admin(app_role, tmp_path):
    _binary("pgbouncer")
    name, password = app_role
    admin_password = secrets.token_urlsafe(18)
    port = processes.free_port()
    env = {"PATH": os.environ["PATH"] + ":/usr/sbin", "PGBOUNCER_CONF_DIR": str(tmp_path / "pgbouncer"),
           "PGBOUNCER_LISTEN_ADDR": "127.0.0.1", "PGBOUNCER_LISTEN_PORT": str(port),
           "PGBOUNCER_DB_HOST": "127.0.0.1", "PGBOUNCER_DB_PORT": "5432", "PGBOUNCER_DB_NAME": name,
           "PGBOUNCER_APP_USER": name, "PGBOUNCER_APP_PASSWORD": password,
           "PGBOUNCER_ADMIN_USER": "pgbouncer_admin", "PGBOUNCER_ADMIN_PASSWORD": admin_password}
    process = processes.Process("pgbouncer", ["sh", str(DEPLOY / "pgbouncer-start.sh")], env, tmp_path)
    connect = {"host": "127.0.0.1", "port": port, "connect_timeout": 5}
    try:
        processes.wait_for_port(port, process, timeout=15)
        assert (tmp_path / "pgbouncer" / "userlist.txt").stat().st_mode & 0o077 == 0
        with psycopg.connect(**connect, user="pgbouncer_admin", password=admin_password, dbname="pgbouncer",
                             autocommit=True) as console:
            config = {row[0]: row[1] for row in console.execute("SHOW CONFIG").fetchall()}
            databases = [row[0] for row in console.execute("SHOW DATABASES").fetchall()]
        assert config["pool_mode"] == "transaction" and config["auth_type"] == "scram-sha-256"
        assert sorted(databases) == sorted([name, "pgbouncer"])
        # The app's role, with its password, reaches its database (and owns it: it can create tables).
        with psycopg.connect(**connect, user=name, password=password, dbname=name, prepare_threshold=None) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (name, name)
            conn.execute("CREATE TABLE deploy_check (id int)")
        for refused in (
            {"user": name, "password": "wrong", "dbname": name},  # a wrong password
            {"user": name, "password": password, "dbname": "postgres"},  # another database
            {"user": name, "password": password, "dbname": "pgbouncer"},  # the console, as the app
            {"user": "postgres", "password": "", "dbname": name},  # anyone not in the auth file
        ):
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(**connect, **refused).close()
    finally:
        process.stop()
    # The admin must be another user than the app's.
    same = subprocess.run(["sh", str(DEPLOY / "pgbouncer-start.sh")], capture_output=True, text=True,
                          env={**env, "PGBOUNCER_ADMIN_USER": name, "PGBOUNCER_CONF_DIR": str(tmp_path / "other")})
    assert same.returncode == 2 and "must not be the app's user" in same.stderr


# --- Image, .env.example, scripts ---------------------------------------------------------------

def test_dockerfile_runtime_runs_uvicorn_as_a_non_root_user_with_a_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)
    runtime = stages[-1]
    assert runtime.startswith("app AS runtime")  # the last stage is the default target
    user = re.findall(r"^USER (\S+)", runtime, flags=re.M)[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck\.py", runtime, flags=re.M)
    assert "/healthz" in (DEPLOY / "healthcheck.py").read_text()
    assert re.search(r'^CMD \["uvicorn".*"--no-access-log".*"flashbid\.asgi:application"\]', runtime, flags=re.M)
    assert re.search(r"^ENV DEBUG=false", runtime, flags=re.M)
    # collectstatic at build time, with a key that exists only in that RUN; no secret in ENV or ARG.
    assert re.search(r"^RUN SECRET_KEY=\S+ DEBUG=false \\\n\s+python manage.py collectstatic", text, flags=re.M)
    assert not re.search(r"^(ENV|ARG)\b.*(SECRET|PASSWORD)", text, flags=re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "var", "**/*.pem", "**/*.key"} <= set(ignored)


def test_env_example_lists_every_configuration_variable_and_no_secret(compose):
    example = _env_example()
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):]
    table = table[:table.index("\n## ", 1)]
    documented = set(re.findall(r"^\| `([A-Z_]+)`", table, flags=re.M)) | set(re.findall(r"/ `([A-Z_]+)`", table))
    assert documented and not documented - set(example), f"missing in .env.example: {documented - set(example)}"
    # Whatever deploy/docker-compose.yml interpolates is there too.
    interpolated = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE_FILE.read_text()))
    assert not interpolated - set(example), f"missing in .env.example: {interpolated - set(example)}"
    for secret in (*SECRET_HOLDERS, "PGBOUNCER_ADMIN_PASSWORD"):
        assert example[secret] == "", f"{secret} must be empty in .env.example"
    # And nothing in it that nothing reads (a setting renamed, the old name left behind): read by
    # the settings' code (not their comments), the process file, the scripts, or compose other than
    # passing it on unchanged to the application (`NAME: ${NAME:-}`, which the settings must read).
    code = "\n".join(line.split("#", 1)[0] for line in (ROOT / "flashbid" / "settings.py").read_text().splitlines())
    compose_own = re.sub(r"^\s*([A-Z_]+): \$\{\1(:-[^}]*)?\}\s*$", "", COMPOSE_FILE.read_text(), flags=re.M)
    readers = "\n".join([code, compose_own, *(path.read_text() for path in (
        DEPLOY / "Procfile", *DEPLOY.glob("*.sh"), ROOT / "auctions" / "management" / "commands" / "seed_demo.py"))])
    unread = {name for name in example if name != "COMPOSE_PROJECT_NAME" and not re.search(rf"\b{name}\b", readers)}
    assert not unread, f"in .env.example, read by nothing: {unread}"
    # The certificate files it names are where deploy/self-signed-cert.sh puts them by default.
    assert (example["TLS_CERT_FILE"], example["TLS_KEY_FILE"]) == ("../var/tls/cert.pem", "../var/tls/key.pem")


def test_self_signed_cert_names_the_hosts_and_keeps_its_key_private(tmp_path):
    cert, key = _self_signed(tmp_path / "tls")
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    assert "DNS:localhost, IP Address:127.0.0.1" in text and "CA:FALSE" in text
    assert key.stat().st_mode & 0o077 == 0
    # Run again: the pair is kept, not replaced.
    before = cert.read_bytes()
    subprocess.run(["sh", str(DEPLOY / "self-signed-cert.sh"), str(tmp_path / "tls")], check=True, capture_output=True)
    assert cert.read_bytes() == before


def test_shell_scripts_parse_and_render_refuses_an_unset_placeholder(tmp_path):
    subprocess.run(["bash", "-n", str(DEPLOY / "scale-out.sh")], check=True)
    for script in ("render.sh", "pgbouncer-start.sh", "postgres-init.sh", "self-signed-cert.sh", "redis-cluster.sh"):
        subprocess.run(["sh", "-n", str(DEPLOY / script)], check=True)
    lint = subprocess.run([_binary("shellcheck"), *(str(DEPLOY / s) for s in (
        "scale-out.sh", "render.sh", "pgbouncer-start.sh", "postgres-init.sh", "self-signed-cert.sh", "bootstrap.sh",
        "up.sh", "test.sh", "debian-packages.sh", "redis-cluster.sh"))],
        capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    template = tmp_path / "t.conf"
    template.write_text("listen ${NGINX_LISTEN}; $host ${NOT_SET_ANYWHERE};\n")
    env = {"PATH": os.environ["PATH"], "NGINX_LISTEN": "8080"}
    failed = subprocess.run(["sh", str(DEPLOY / "render.sh"), str(template), str(tmp_path / "out")], env=env,
                            capture_output=True, text=True)
    assert failed.returncode == 1 and "NOT_SET_ANYWHERE is not set" in failed.stderr
    assert not (tmp_path / "out").exists()
