"""The deployment files hold what docs/OPERATIONS.md promises: deploy/docker-compose.yml is valid Compose
(the vendored compose-spec schema) and wired as intended (two web replicas, one worker, exactly one
beat, PgBouncer in transaction mode in front of PostgreSQL, Redis with AOF, health checks or
start conditions), the nginx and PgBouncer templates render into configs their own programs
accept, the image runs as a non-root user, and .env.example lists every setting without secrets."""

import configparser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import psycopg
import pytest
import yaml

from tests import processes

ROOT = processes.ROOT
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"


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
    assert services["web"]["deploy"]["replicas"] == 2
    assert _command(services["web"])[0] == "daphne" and "flashbid.asgi:application" in _command(services["web"])


def test_web_worker_and_beat_reach_postgresql_through_pgbouncer_without_a_django_pool(compose):
    services = compose["services"]
    for name in ("web", "worker", "beat"):
        environment = services[name]["environment"]
        assert environment["DATABASE_POOL"] == "false", name
        assert "@pgbouncer:6432/" in environment["DATABASE_URL"], name
        assert environment["REDIS_URL"] == "redis://redis:6379/0", name
    # Migrations (DDL) go straight to PostgreSQL, once, before anything else starts.
    assert "@postgres:5432/" in services["migrate"]["environment"]["DATABASE_URL"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    pgbouncer = services["pgbouncer"]
    assert "/flashbid/pgbouncer.ini" in {v.split(":")[1] for v in pgbouncer["volumes"]}
    assert pgbouncer["environment"]["PGBOUNCER_DB_HOST"] == "postgres"


def test_pgbouncer_config_pools_by_transaction():
    config = configparser.ConfigParser(interpolation=None)
    config.read_string((DEPLOY / "pgbouncer.ini").read_text())
    assert config["pgbouncer"]["pool_mode"] == "transaction"
    assert config["databases"]["*"].startswith("host=")


def test_redis_runs_deploy_redis_conf_with_aof_everysec(compose):
    redis = compose["services"]["redis"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in redis["volumes"]}
    conf_path = _command(redis)[1]
    assert _command(redis)[0] == "redis-server" and mounted[conf_path] == "./redis.conf"
    assert mounted["/data"] in compose["volumes"]  # the AOF lives on a named volume
    settings = dict(line.split(None, 1) for line in (DEPLOY / "redis.conf").read_text().splitlines()
                    if line.strip() and not line.startswith("#"))
    assert settings["appendonly"] == "yes" and settings["appendfsync"] == "everysec"


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
    assert healthy >= {"postgres", "pgbouncer", "redis", "web", "worker", "flower", "nginx"}


def test_nginx_fronts_the_web_replicas_with_websocket_upgrade_and_request_ids(compose, tmp_path):
    nginx = compose["services"]["nginx"]
    assert nginx["depends_on"] == {"web": {"condition": "service_healthy"}}
    assert nginx["environment"]["NGINX_UPSTREAM_SERVERS"].startswith("server web:8000")
    # Every placeholder of the template is set by the compose service.
    env = {**os.environ, **{k: str(v) for k, v in nginx["environment"].items()}}
    subprocess.run(["sh", str(DEPLOY / "render.sh"), str(DEPLOY / "nginx.conf"), str(tmp_path / "nginx.conf")],
                   env=env, check=True)
    text = (tmp_path / "nginx.conf").read_text()
    websocket = text[text.index("location /ws/"):]
    websocket = websocket[:websocket.index("}")]
    for line in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                 'proxy_set_header Connection "upgrade";', "proxy_set_header X-Request-ID $flashbid_request_id;",
                 "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"):
        assert line in websocket, line
    assert "add_header X-Request-ID $flashbid_request_id always;" in text
    assert "alias /srv/static/;" in text and "server web:8000 resolve;" in text
    metrics = text[text.index("location = /metrics"):]
    metrics = [line.strip() for line in metrics[:metrics.index("}")].splitlines()]
    allowed = [line.split()[1].rstrip(";") for line in metrics if line.startswith("allow ")]
    assert metrics.index("deny all;") > max(i for i, line in enumerate(metrics) if line.startswith("allow "))
    assert "0.0.0.0/0" not in allowed and "all" not in allowed  # only loopback and private networks


def test_scale_out_renders_an_nginx_config_that_nginx_accepts(tmp_path):
    nginx = _binary("nginx")
    env = {**os.environ, "SCALE_OUT_DIR": str(tmp_path / "run"), "SCALE_OUT_WEB_PORTS": "18201 18202",
           "STATIC_ROOT": str(tmp_path / "static")}
    rendered = subprocess.run([str(DEPLOY / "scale-out.sh"), "render"], cwd=ROOT, env=env, check=True,
                              capture_output=True, text=True, timeout=60).stdout.split()
    conf = Path(rendered[0])
    assert "server 127.0.0.1:18201" in conf.read_text() and "server 127.0.0.1:18202" in conf.read_text()
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-e", str(tmp_path / "error.log")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    pgbouncer = configparser.ConfigParser(interpolation=None)
    pgbouncer.read(rendered[1])
    assert pgbouncer["pgbouncer"]["pool_mode"] == "transaction"


def test_rendered_pgbouncer_starts_in_transaction_mode_and_reaches_postgresql(tmp_path):
    _binary("pgbouncer")
    port = processes.free_port()
    env = {"PATH": os.environ["PATH"] + ":/usr/sbin", "PGBOUNCER_CONF_DIR": str(tmp_path / "pgbouncer"),
           "PGBOUNCER_LISTEN_ADDR": "127.0.0.1", "PGBOUNCER_LISTEN_PORT": str(port),
           "PGBOUNCER_DB_HOST": "127.0.0.1", "PGBOUNCER_DB_PORT": "5432", "PGBOUNCER_AUTH_TYPE": "trust",
           "PGBOUNCER_AUTH_USER": "postgres"}
    process = processes.Process("pgbouncer", ["sh", str(DEPLOY / "pgbouncer-start.sh")], env, tmp_path)
    try:
        processes.wait_for_port(port, process, timeout=15)
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="pgbouncer",
                             autocommit=True) as console:
            config = {row[0]: row[1] for row in console.execute("SHOW CONFIG").fetchall()}
        assert config["pool_mode"] == "transaction" and config["auth_type"] == "trust"
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             prepare_threshold=None) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("postgres",)
    finally:
        process.stop()


def test_dockerfile_runtime_runs_daphne_as_a_non_root_user_with_a_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)
    runtime = stages[-1]
    assert runtime.startswith("app AS runtime")  # the last stage is the default target
    user = re.findall(r"^USER (\S+)", runtime, flags=re.M)[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck\.py", runtime, flags=re.M)
    assert "/healthz" in (DEPLOY / "healthcheck.py").read_text()
    assert re.search(r'^CMD \["daphne".*"flashbid\.asgi:application"\]', runtime, flags=re.M)
    assert re.search(r"^ENV DEBUG=false", runtime, flags=re.M)
    # collectstatic at build time, with a key that exists only in that RUN; no secret in ENV or ARG.
    assert re.search(r"^RUN SECRET_KEY=\S+ DEBUG=false \\\n\s+python manage.py collectstatic", text, flags=re.M)
    assert not re.search(r"^(ENV|ARG)\b.*(SECRET|PASSWORD)", text, flags=re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "var"} <= set(ignored)


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
    for secret in ("SECRET_KEY", "POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"):
        assert example[secret] == "", f"{secret} must be empty in .env.example"


def test_shell_scripts_parse_and_render_refuses_an_unset_placeholder(tmp_path):
    subprocess.run(["bash", "-n", str(DEPLOY / "scale-out.sh")], check=True)
    for script in ("render.sh", "pgbouncer-start.sh"):
        subprocess.run(["sh", "-n", str(DEPLOY / script)], check=True)
    lint = subprocess.run([_binary("shellcheck"), *(str(DEPLOY / s) for s in (
        "scale-out.sh", "render.sh", "pgbouncer-start.sh", "bootstrap.sh", "up.sh", "test.sh", "debian-packages.sh"))],
        capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    template = tmp_path / "t.conf"
    template.write_text("listen ${NGINX_LISTEN}; $host ${NOT_SET_ANYWHERE};\n")
    env = {"PATH": os.environ["PATH"], "NGINX_LISTEN": "8080"}
    failed = subprocess.run(["sh", str(DEPLOY / "render.sh"), str(template), str(tmp_path / "out")], env=env,
                            capture_output=True, text=True)
    assert failed.returncode == 1 and "NOT_SET_ANYWHERE is not set" in failed.stderr
    assert not (tmp_path / "out").exists()
