"""The Docker Compose stack cannot be started here (no Docker engine), so validate what can be:
its shape, and that the web service's environment passes Django's deployment checks."""

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} forms."""

    def replace(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and env[name] != "":
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose requires {name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", replace, value)


def test_compose_runs_the_full_stack():
    services = compose()["services"]
    assert {"web", "worker", "beat", "db", "redis", "mail", "proxy"} <= set(services)
    assert "gunicorn portal.wsgi:application" in services["web"]["command"]
    assert services["worker"]["command"].startswith("celery -A portal worker")
    assert services["beat"]["command"].startswith("celery -A portal beat")
    assert services["db"]["image"].startswith("postgres")
    assert services["redis"]["image"].startswith("redis")
    # Web and worker share the DICOM volume: a worker may need the files a web process stored.
    assert services["web"]["volumes"] == services["worker"]["volumes"]


def test_compose_runs_the_dicom_listener_beside_the_web_service():
    services = compose()["services"]
    dicom = services["dicom"]
    assert dicom["command"] == "python manage.py dicom_listener --host 0.0.0.0 --port 11112"
    assert "11112:11112" in dicom["ports"]
    # It stores what the web service serves, configured as the web service is.
    assert dicom["volumes"] == services["web"]["volumes"]
    assert dicom["environment"] == services["web"]["environment"]
    # The web service's health means the migrations have run.
    assert dicom["depends_on"]["web"] == {"condition": "service_healthy"}


def test_compose_web_environment_passes_deploy_checks(tmp_path):
    env_values = {
        "SECRET_KEY": "k" * 20 + "Zq8#Lm2!Vw5@Rt7$Yp3%Hs6^Jd9&Nf4*Bx1(" + "c" * 10,
        "AUDIT_KEY": "a" * 20 + "Gh4#Tq9!Rm2@Wx7$" + "d" * 12,
    }
    web_env = {
        key: interpolate(str(value), env_values)
        for key, value in compose()["services"]["web"]["environment"].items()
    }
    # Only what the container would have: nothing from the test process leaks in. The database
    # host "db" only resolves inside Compose; check --deploy does not connect to it.
    process_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_ENV_FILE": "",
        **web_env,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_compose_env_example_names_every_required_variable():
    example = (ROOT / "deploy" / "env.example").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert required, "compose should require at least SECRET_KEY"
    for name in required:
        assert re.search(rf"^{name}=", example, re.MULTILINE), f"{name} missing from env.example"


def test_compose_trusts_its_own_proxy_and_nothing_else():
    """Behind Caddy every request comes from Caddy: the portal must know its address to read
    the client's from X-Forwarded-For, and trust no one else (see README, "Throttles and
    reverse proxies")."""
    stack = compose()
    services = stack["services"]
    proxy_address = services["proxy"]["networks"]["default"]["ipv4_address"]
    subnet = stack["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(proxy_address) in ipaddress.ip_network(subnet)
    web_env = services["web"]["environment"]
    assert web_env["TRUSTED_PROXIES"] == proxy_address
    assert web_env.get("FORWARDED_ALLOW_IPS", proxy_address) == proxy_address


def test_compose_serves_ohif_on_its_own_host():
    services = compose()["services"]
    ohif = services["ohif"]
    assert ohif["command"].startswith("gunicorn ") and "viewers.ohif:application" in ohif["command"]
    # Configured as the web service is: the same settings say where the portal and OHIF are.
    assert ohif["environment"] == services["web"]["environment"]
    env = services["web"]["environment"]
    assert interpolate(env["OHIF_URL"], {}) == "https://ohif.localhost"
    assert interpolate(env["SITE_URL"], {}) == "https://localhost"
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "{$OHIF_HOSTNAME:ohif.localhost} {" in caddyfile
    assert "reverse_proxy ohif:8001" in caddyfile
