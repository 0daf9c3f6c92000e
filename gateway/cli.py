"""The ``rondpoint`` command: serve the gateway, and administer a running one through its admin API.

Installed protocol plugins add their own commands (``ProtocolPlugin.cli``), which call the admin
API with ``admin_request`` and print what others typed with ``print_safe``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from gateway.config import Config, ConfigError, load_config
from gateway.plugins import PluginError, installed
from gateway.rooms.names import terminal_safe

DESCRIPTION = (
    "The ``rondpoint`` command: serve the gateway, and administer a running one through its "
    "admin API."
)
EXIT_USAGE = 2
EXIT_FAILED = 1


class CliError(Exception):
    """A command failed; the message is printed (terminal-safe) and the exit status is 1."""


def main(argv: list[str] | None = None) -> int:
    try:
        parser = _parser()
    except PluginError as e:
        print(f"rondpoint: {e}", file=sys.stderr)
        return EXIT_FAILED
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"rondpoint: invalid configuration: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args, config) or 0)
    except CliError as e:  # may carry what the gateway answered: printed terminal-safe
        print(f"rondpoint: {terminal_safe(str(e))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """The options every command takes, before or after its name (``default`` SUPPRESS on commands,
    so an option given after the command wins and one given before is not reset)."""
    parser.add_argument(
        "--config", metavar="FILE", default=default, help="TOML configuration (default: embedded)"
    )
    parser.add_argument(
        "--url", default=default, help="the running gateway's base URL (admin commands)"
    )
    parser.add_argument(
        "--admin-token",
        default=default,
        help="admin token (default: $RONDPOINT_ADMIN_TOKEN, then DATA_DIR/admin-token)",
    )


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: it accepts the global options too (``rondpoint serve --config F``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_global_options(self, argparse.SUPPRESS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rondpoint",
        description=DESCRIPTION,
        epilog="installed protocols: "
        + ("; ".join(f"{p.name} ({p.summary})" for p in installed()) or "none"),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_global_options(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--log-format", choices=["text", "json"], help="log format (default: text)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=_serve)

    room = commands.add_parser("room", help="create, list, show and delete rooms")
    room_commands = room.add_subparsers(dest="room_command", metavar="ACTION", required=True)
    create = room_commands.add_parser("create", help="create a room")
    create.add_argument("name")
    create.add_argument(
        "--pin", nargs="?", const=True, default=None, help="require a PIN (given, or generated)"
    )
    create.add_argument("--lobby", action="store_true", help="hosts admit everyone else")
    create.set_defaults(run=_room_create)
    room_commands.add_parser("list", help="list rooms").set_defaults(run=_room_list)
    show = room_commands.add_parser("show", help="participants, tracks and links of a room")
    show.add_argument("name")
    show.set_defaults(run=_room_show)
    delete = room_commands.add_parser("delete", help="delete a room, ending its call")
    delete.add_argument("name")
    delete.set_defaults(run=_room_delete)

    token = commands.add_parser("token", help="mint a join token and print the join URL")
    token.add_argument("name", help="room name")
    token.add_argument("--identity", required=True)
    token.add_argument("--name", dest="display_name")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.add_argument("--role", choices=["host", "member", "guest"], default="host")
    token.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="may publish audio, video and screen share (default: yes)",
    )
    token.add_argument(
        "--subscribe",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="receives the others' audio and video (default: yes)",
    )
    token.set_defaults(run=_token)

    dial = commands.add_parser("dial", help="call a phone into a room (sip: URI, tel: or number)")
    dial.add_argument("name", help="room name")
    dial.add_argument("target", help="sip:alice@example.org, tel:+33..., or a number")
    dial.add_argument(
        "--trunk", help="the trunk to call through (default: the first with an address)"
    )
    dial.set_defaults(run=_dial)

    link = commands.add_parser("link", help="link a room to a foreign room (visio:VISIO_ROOM_UUID)")
    link.add_argument("name", help="room name")
    link.add_argument("target", help="visio:VISIO_ROOM_UUID")
    link.set_defaults(run=_link)
    unlink = commands.add_parser("unlink", help="remove a room's link to a foreign room")
    unlink.add_argument("name", help="room name")
    unlink.add_argument("target", help="the linked target, as 'rondpoint room show' prints it")
    unlink.set_defaults(run=_unlink)

    for plugin in installed():
        if plugin.cli is not None:
            # a plugin's subcommands are _CommandParser too: they take the global options
            plugin.cli(commands)

    admin_token = commands.add_parser(
        "admin-token", help="the admin token (on this machine's data directory)"
    )
    admin_token_commands = admin_token.add_subparsers(
        dest="admin_token_command", metavar="ACTION", required=True
    )
    admin_token_commands.add_parser(
        "rotate",
        help="make a new admin token, print it and write it to DATA_DIR/admin-token; the old one "
        "stops working at once, the running gateway included",
    ).set_defaults(run=_admin_token_rotate)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("rondpoint")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _serve(args: argparse.Namespace, config: Config) -> int:
    import uvloop

    from gateway.logs import setup_logging
    from gateway.process import StartupError, serve

    if args.log_format:
        config.log.format = args.log_format
    if args.log_level:
        config.log.level = args.log_level
    setup_logging(config.log.level, config.log.format)
    try:
        uvloop.run(serve(config))
    except StartupError as e:
        print(f"rondpoint: cannot start: {e}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:
        print(f"rondpoint: cannot start: {e}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _admin_token_rotate(args: argparse.Namespace, config: Config) -> None:
    """Local, on the data directory: works when the token file is lost and whether or not the
    gateway runs (the admin API reads the store on each request)."""
    from gateway.store import (
        DATABASE_FILE,
        StoreError,
        admin_token_path,
        new_admin_token,
        open_store,
    )

    database = config.data_path / DATABASE_FILE
    if not database.is_file():
        raise CliError(f"no database at {database}: give the gateway's configuration with --config")
    try:
        store = open_store(database, installed())
    except StoreError as e:
        raise CliError(str(e)) from None
    try:
        token = new_admin_token(store, config.data_path, "rotated")
    except OSError as e:
        raise CliError(f"{e.filename or config.data_path}: {e.strerror or e}") from None
    finally:
        store.close()
    print(
        f"new admin token (the old one no longer works; also in {admin_token_path(config.data_path)}):"
    )
    print(token)


# admin commands ------------------------------------------------------------------
def admin_request(
    args: argparse.Namespace, config: Config, method: str, path: str, body: Any = None
) -> Any:
    """Call the running gateway's admin API (``--url``, ``--admin-token`` or their defaults) and
    return the decoded JSON answer; CliError with the gateway's sentence when it refuses."""
    url = (args.url or os.environ.get("RONDPOINT_URL") or config.listener_url).rstrip("/")
    token = args.admin_token or os.environ.get("RONDPOINT_ADMIN_TOKEN") or _token_file(config)
    if not token:
        raise CliError(
            f"no admin token: pass --admin-token, set RONDPOINT_ADMIN_TOKEN, or run where "
            f"{config.data_path / 'admin-token'} exists"
        )
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        try:
            problem = json.loads(e.read())
            detail = problem.get("detail") or problem.get("title")
        except ValueError:
            detail = e.reason
        raise CliError(f"{detail} (HTTP {e.code})") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise CliError(
            f"the gateway is not running at {url} ({reason}); start it with 'rondpoint serve'"
        ) from None
    return json.loads(raw) if raw else None


def _token_file(config: Config) -> str:
    path = Path(config.data_path) / "admin-token"
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _room_create(args: argparse.Namespace, config: Config) -> None:
    body: dict[str, Any] = {"id": args.name, "lobby": args.lobby}
    if args.pin is not None:
        body["pin"] = args.pin
    room = admin_request(args, config, "POST", "/api/v1/rooms", body)
    print(f"room {room['id']} created")
    if room.get("pin"):
        print(f"  PIN    {room['pin']}")
    print(f"  lobby  {'on' if room['policy']['lobby'] else 'off'}")


def _room_list(args: argparse.Namespace, config: Config) -> None:
    rooms = admin_request(args, config, "GET", "/api/v1/rooms")["rooms"]
    if not rooms:
        print("no rooms")
        return
    print(f"{'ROOM':<32} {'PEOPLE':>6}  {'PIN':<3}  {'LOBBY':<5}  LINKS")
    for room in rooms:
        policy = room["policy"]
        print_safe(
            f"{room['id']:<32} {room['participants']:>6}  {'yes' if policy['pin'] else 'no':<3}  "
            f"{'yes' if policy['lobby'] else 'no':<5}  {', '.join(room['links']) or '-'}"
        )


def _room_show(args: argparse.Namespace, config: Config) -> None:
    room = admin_request(args, config, "GET", f"/api/v1/rooms/{args.name}")
    policy = room["policy"]
    print_safe(f"room {room['id']} on {room['server']}")
    print_safe(f"  PIN    {room.get('pin') or 'none'}")
    print(f"  lobby  {'on' if policy['lobby'] else 'off'}")
    links = room["links"]
    print(f"  links  {'none' if not links else f'({len(links)})'}")
    for link in links:
        print_safe(f"    {_link_line(link)}")
    print(f"  participants ({len(room['participants'])})")
    for p in room["participants"]:
        print_safe(f"    {p['id']}  {p['name']}  [{p['origin']}, {p['role']}, {p['state']}]")
        for t in p["tracks"]:
            muted = ", muted" if t["muted"] else ""
            print_safe(f"      {t['id']}  {t['kind']} {t['source']} {t['codec']}{muted}")


def print_safe(line: str) -> None:
    """A line carrying what others typed (names, a foreign system's link detail): whatever is not
    printable is shown escaped, so it cannot drive the terminal (ANSI) or fail to encode."""
    print(terminal_safe(line))


def _link_line(link: Any) -> str:
    """``visio:...  connected since 14:02:11, 3 remote`` or with the detail and attempts."""
    if isinstance(link, str):  # a gateway older than the links API
        return link
    status = link.get("status") or {}
    parts = [str(status.get("state", "?"))]
    since = status.get("since")
    if since:
        parts.append("since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since / 1000)))
    if status.get("attempts"):
        parts.append(f"attempts {status['attempts']}")
    if status.get("remote_participants"):
        parts.append(f"remote participants {status['remote_participants']}")
    line = f"{link.get('target', '?')}  [{', '.join(parts)}]"
    if status.get("detail"):
        line += f"  {status['detail']}"
    return line


def _room_delete(args: argparse.Namespace, config: Config) -> None:
    admin_request(args, config, "DELETE", f"/api/v1/rooms/{args.name}")
    print(f"room {args.name} deleted")


def _token(args: argparse.Namespace, config: Config) -> None:
    body = {
        "identity": args.identity,
        "ttl": args.ttl,
        "role": args.role,
        "can_publish": args.publish,
        "can_subscribe": args.subscribe,
    }
    if args.display_name:
        body["name"] = args.display_name
    minted = admin_request(args, config, "POST", f"/api/v1/rooms/{args.name}/tokens", body)
    print(minted["url"])


def _dial(args: argparse.Namespace, config: Config) -> None:
    body: dict[str, Any] = {"to": args.target}
    if args.trunk:
        body["trunk"] = args.trunk
    call = admin_request(args, config, "POST", f"/api/v1/rooms/{args.name}/dial", body)
    print(f"calling {call['to']} into {call['room']} (call {call['id']}: {call['status']})")


def _link(args: argparse.Namespace, config: Config) -> None:
    room = urllib.parse.quote(args.name, safe="")
    linked = admin_request(
        args, config, "POST", f"/api/v1/rooms/{room}/links", {"target": args.target}
    )
    print(f"room {args.name} linked to {linked['target']}  [{linked['status']['state']}]")
    if linked["status"].get("detail"):
        print(f"  {linked['status']['detail']}")


def _unlink(args: argparse.Namespace, config: Config) -> None:
    room = urllib.parse.quote(args.name, safe="")
    target = urllib.parse.quote(args.target, safe="")
    admin_request(args, config, "DELETE", f"/api/v1/rooms/{room}/links/{target}")
    print(f"room {args.name} unlinked from {args.target}")


if __name__ == "__main__":
    sys.exit(main())
