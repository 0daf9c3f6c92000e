"""The ``rondpoint`` command: serve the gateway, and administer a running one through its admin API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway.config import Config, ConfigError, load_config

EXIT_USAGE = 2
EXIT_FAILED = 1


class CliError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
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
    except CliError as e:
        print(f"rondpoint: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rondpoint", description=__doc__)
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (default: embedded)")
    parser.add_argument("--url", help="the running gateway's base URL (admin commands)")
    parser.add_argument(
        "--admin-token",
        help="admin token (default: $RONDPOINT_ADMIN_TOKEN, then DATA_DIR/admin-token)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

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
    token.set_defaults(run=_token)
    return parser


def _serve(args: argparse.Namespace, config: Config) -> int:
    import uvloop

    from gateway.logs import setup_logging
    from gateway.server import serve

    if args.log_format:
        config.log.format = args.log_format
    if args.log_level:
        config.log.level = args.log_level
    setup_logging(config.log.level, config.log.format)
    try:
        uvloop.run(serve(config))
    except OSError as e:
        print(f"rondpoint: cannot start: {e}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# admin commands ------------------------------------------------------------------
def _admin(
    args: argparse.Namespace, config: Config, method: str, path: str, body: Any = None
) -> Any:
    url = (args.url or os.environ.get("RONDPOINT_URL") or config.base_url).rstrip("/")
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
    room = _admin(args, config, "POST", "/api/v1/rooms", body)
    print(f"room {room['id']} created")
    if room.get("pin"):
        print(f"  PIN    {room['pin']}")
    print(f"  lobby  {'on' if room['policy']['lobby'] else 'off'}")


def _room_list(args: argparse.Namespace, config: Config) -> None:
    rooms = _admin(args, config, "GET", "/api/v1/rooms")["rooms"]
    if not rooms:
        print("no rooms")
        return
    print(f"{'ROOM':<32} {'PEOPLE':>6}  {'PIN':<3}  {'LOBBY':<5}  LINKS")
    for room in rooms:
        policy = room["policy"]
        print(
            f"{room['id']:<32} {room['participants']:>6}  {'yes' if policy['pin'] else 'no':<3}  "
            f"{'yes' if policy['lobby'] else 'no':<5}  {', '.join(room['links']) or '-'}"
        )


def _room_show(args: argparse.Namespace, config: Config) -> None:
    room = _admin(args, config, "GET", f"/api/v1/rooms/{args.name}")
    policy = room["policy"]
    print(f"room {room['id']} on {room['server']}")
    print(f"  PIN    {room.get('pin') or 'none'}")
    print(f"  lobby  {'on' if policy['lobby'] else 'off'}")
    print(f"  links  {', '.join(room['links']) or 'none'}")
    print(f"  participants ({len(room['participants'])})")
    for p in room["participants"]:
        print(f"    {p['id']}  {p['name']}  [{p['origin']}, {p['role']}, {p['state']}]")
        for t in p["tracks"]:
            muted = ", muted" if t["muted"] else ""
            print(f"      {t['id']}  {t['kind']} {t['source']} {t['codec']}{muted}")


def _room_delete(args: argparse.Namespace, config: Config) -> None:
    _admin(args, config, "DELETE", f"/api/v1/rooms/{args.name}")
    print(f"room {args.name} deleted")


def _token(args: argparse.Namespace, config: Config) -> None:
    body = {"identity": args.identity, "ttl": args.ttl, "role": args.role}
    if args.display_name:
        body["name"] = args.display_name
    minted = _admin(args, config, "POST", f"/api/v1/rooms/{args.name}/tokens", body)
    print(minted["url"])


if __name__ == "__main__":
    sys.exit(main())
