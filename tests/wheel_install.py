"""What a user gets from the package, not the source tree: build the wheel, install it into a fresh
virtual environment without extras, start ``rondpoint serve`` from an empty folder on free ports, and
run the ORS conformance suite (spec/conformance: join, publish, subscribe, leave) against it. The
example protocol plugin (tests/plugin_example) is installed beside it, as a partner's package would
be, and an ``echo:`` link and dial are checked against the same gateway.

``make test`` runs everything else from the source tree with the test extras, where a module missing
from the wheel or a dependency declared only for tests cannot show. Run: ``python -m tests.wheel_install``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.gateway_process import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_EXAMPLE = ROOT / "tests" / "plugin_example"
WORK = ROOT / ".cache" / "wheel-install"
READY_SECONDS = 60
SUITE_SECONDS = 600


def step(text: str) -> None:
    print(f"wheel-install: {text}", flush=True)


def run(*command: str | Path, cwd: Path = ROOT, timeout: float = 900) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
    )
    if result.returncode != 0:
        sys.exit(
            f"wheel-install: {' '.join(map(str, command))} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH or virtual environment of ours leaks into the fresh one."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def build_and_install() -> Path:
    shutil.rmtree(WORK, ignore_errors=True)
    dist, venv = WORK / "dist", WORK / "venv"
    step("building the wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT)
    [wheel] = dist.glob("rondpoint-*.whl")
    step(f"installing {wheel.name} into a fresh virtual environment, without extras")
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    step("installing the example plugin tests/plugin_example beside it")
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", PLUGIN_EXAMPLE)
    return venv


def check_installed(venv: Path, empty: Path) -> None:
    """The command, the package's location and its schemas, as the installed copy has them."""
    version = run(venv / "bin" / "rondpoint", "--version", cwd=empty).strip()
    assert version.startswith("rondpoint "), version
    probe = (
        "import json, gateway; from gateway.ors.schemas import schema_files; "
        "print(json.dumps({'file': gateway.__file__, 'schemas': schema_files()}))"
    )
    installed = json.loads(run(venv / "bin" / "python", "-c", probe, cwd=empty))
    assert Path(installed["file"]).is_relative_to(venv), (
        f"gateway imported from {installed['file']}"
    )
    published = {
        path.name: json.loads(path.read_text())
        for path in (ROOT / "spec" / "schemas").glob("*.json")
    }
    assert installed["schemas"] == published, "the packaged schemas differ from spec/schemas"
    step(f"{version}, {len(published)} schemas identical to spec/schemas")
    static = Path(installed["file"]).parent / "web" / "static"
    shipped = sorted(path.name for path in static.iterdir())
    source = sorted(path.name for path in (ROOT / "gateway" / "web" / "static").iterdir())
    assert shipped == source, f"the wheel's web page has {shipped}, the source tree {source}"
    step(f"the web page's {len(shipped)} files are in the wheel")
    plugins = (
        "import json; from gateway.plugins import installed; import rondpoint_echo; "
        "print(json.dumps({'file': rondpoint_echo.__file__, "
        "'names': [plugin.name for plugin in installed()]}))"
    )
    found = json.loads(run(venv / "bin" / "python", "-c", plugins, cwd=empty))
    assert Path(found["file"]).is_relative_to(venv), f"rondpoint_echo from {found['file']}"
    assert "echo" in found["names"], f"installed plugins: {found['names']}"
    step(f"plugins found through their entry points: {', '.join(found['names'])}")


def admin(url: str, token: str, method: str, path: str, body: object | None = None) -> dict:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return json.loads(raw) if raw else {}


def check_echo_plugin(url: str, token: str) -> None:
    """The installed plugin links and dials through the installed gateway's admin API."""
    admin(url, token, "POST", "/api/v1/rooms", {"id": "wheel-echo"})
    linked = admin(url, token, "POST", "/api/v1/rooms/wheel-echo/links", {"target": "echo:alice"})
    assert linked["status"]["state"] == "connected", linked
    admin(url, token, "POST", "/api/v1/rooms/wheel-echo/dial", {"to": "echo:bob"})
    names: list[str] = []
    deadline = time.monotonic() + 10
    while "bob" not in names and time.monotonic() < deadline:
        time.sleep(0.1)
        room = admin(url, token, "GET", "/api/v1/rooms/wheel-echo")
        names = [participant["name"] for participant in room["participants"]]
    assert {"Echo alice", "bob"} <= set(names), f"participants of wheel-echo: {names}"
    step("an echo: link connects and an echo: dial adds its participant")


def serve(venv: Path, empty: Path, config: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    http_port = free_port()
    media_port = free_port(socket.SOCK_DGRAM)
    sip_port = free_port(socket.SOCK_DGRAM)
    rtp_start = 20000 + (sip_port % 100) * 100
    config.write_text(
        f"[http]\nport = {http_port}\n"
        f"[media]\nport = {media_port}\nport_range_start = {media_port}\n"
        f"port_range_end = {media_port}\n"
        f"[sip]\nport = {sip_port}\nrtp_port_start = {rtp_start}\n"
        f"rtp_port_end = {rtp_start + 99}\n"
    )
    log_path = config.with_suffix(".log")
    step(f"starting 'rondpoint serve --config {config.name}' in an empty folder")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(venv / "bin" / "rondpoint"), "serve", "--config", str(config)],
            cwd=empty,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
        )
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + READY_SECONDS
    while True:
        if process.poll() is not None:
            sys.exit(
                f"wheel-install: the installed gateway exited:\n{log_path.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return process, url, log_path
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            sys.exit(
                f"wheel-install: not ready in {READY_SECONDS} s:\n{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.2)


def main() -> int:
    venv = build_and_install()
    empty = WORK / "empty"
    empty.mkdir()
    check_installed(venv, empty)
    process, url, log_path = serve(venv, empty, WORK / "rondpoint.toml")
    try:
        token_file = empty / "rondpoint-data" / "admin-token"
        if token_file.exists():  # checked below with the gateway's other state
            check_echo_plugin(url, token_file.read_text().strip())
        step(f"running the conformance suite against {url}")
        suite = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-rR",
                "spec/conformance",
                "--ors-url",
                url,
            ],
            cwd=ROOT,
            timeout=SUITE_SECONDS,
        )
    finally:
        stop_process(process, timeout=15)
    log = log_path.read_text(errors="replace")
    if "Traceback" in log:
        sys.exit(f"wheel-install: the installed gateway logged a traceback:\n{log[-4000:]}")
    if suite.returncode != 0:
        sys.exit(
            f"wheel-install: the conformance suite failed against the installed gateway:\n{log[-3000:]}"
        )
    if not (empty / "rondpoint-data" / "admin-token").exists():
        sys.exit("wheel-install: the gateway kept no state under ./rondpoint-data of its folder")
    step("the installed wheel passes the conformance suite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
