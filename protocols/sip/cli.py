"""The SIP plugin's ``rondpoint`` commands: ``trunk`` and ``dispatch``, through the admin API."""

from __future__ import annotations

import argparse
import os
import urllib.parse

from gateway.cli import admin_request
from gateway.config import Config
from gateway.plugins import Commands


def add_commands(commands: Commands) -> None:
    trunk = commands.add_parser("trunk", help="SIP trunks")
    trunk_commands = trunk.add_subparsers(dest="trunk_command", metavar="ACTION", required=True)
    trunk_add = trunk_commands.add_parser("add", help="add or replace a trunk")
    trunk_add.add_argument("trunk_name")
    trunk_add.add_argument("--address", default="", help="host[:port] calls and REGISTERs go to")
    trunk_add.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp")
    trunk_add.add_argument("--username", default="")
    trunk_add.add_argument("--password", default="", help="or $RONDPOINT_TRUNK_PASSWORD")
    trunk_add.add_argument("--allow", action="append", default=[], help="address or CIDR (repeat)")
    trunk_add.add_argument("--register", action="store_true", help="register to the trunk")
    trunk_add.add_argument("--caller-id", default="")
    trunk_add.add_argument(
        "--srtp", choices=["off", "optional", "required"], default="optional", help="SDES-SRTP"
    )
    trunk_add.set_defaults(run=_trunk_add)
    trunk_commands.add_parser("list", help="list trunks").set_defaults(run=_trunk_list)
    trunk_delete = trunk_commands.add_parser("delete", help="delete a trunk")
    trunk_delete.add_argument("trunk_name")
    trunk_delete.set_defaults(run=_trunk_delete)

    dispatch = commands.add_parser("dispatch", help="which room a dialled number reaches")
    dispatch_commands = dispatch.add_subparsers(
        dest="dispatch_command", metavar="ACTION", required=True
    )
    dispatch_add = dispatch_commands.add_parser("add", help="add or replace a rule")
    dispatch_add.add_argument("number", help="a dialled number or SIP user, or * for every other")
    dispatch_add.add_argument(
        "--room",
        help="the room, or a link target such as visio:UUID or matrix:!id:server "
        "(default: ask the caller for a room PIN)",
    )
    dispatch_add.add_argument(
        "--pin", help="digits the caller must type first (e.g. for --room visio:UUID)"
    )
    dispatch_add.add_argument("--language", choices=["fr", "en"])
    dispatch_add.set_defaults(run=_dispatch_add)
    dispatch_commands.add_parser("list", help="list rules").set_defaults(run=_dispatch_list)
    dispatch_delete = dispatch_commands.add_parser("delete", help="delete a rule")
    dispatch_delete.add_argument("number")
    dispatch_delete.set_defaults(run=_dispatch_delete)


def _trunk_add(args: argparse.Namespace, config: Config) -> None:
    body = {
        "name": args.trunk_name,
        "address": args.address,
        "transport": args.transport,
        "username": args.username,
        "password": args.password or os.environ.get("RONDPOINT_TRUNK_PASSWORD", ""),
        "allowed": args.allow,
        "register": args.register,
        "caller_id": args.caller_id,
        "srtp": args.srtp,
    }
    trunk = admin_request(args, config, "POST", "/api/v1/sip/trunks", body)
    print(f"trunk {trunk['name']} saved")


def _trunk_list(args: argparse.Namespace, config: Config) -> None:
    trunks = admin_request(args, config, "GET", "/api/v1/sip/trunks")["trunks"]
    if not trunks:
        print("no trunks")
    for t in trunks:
        allowed = ", ".join(t["allowed"]) or "-"
        register = "registers" if t["register"] else "no register"
        print(
            f"{t['name']:<20} {t['transport']} {t['address'] or '-':<28} allow {allowed}  {register}"
        )


def _trunk_delete(args: argparse.Namespace, config: Config) -> None:
    admin_request(args, config, "DELETE", f"/api/v1/sip/trunks/{args.trunk_name}")
    print(f"trunk {args.trunk_name} deleted")


def _dispatch_add(args: argparse.Namespace, config: Config) -> None:
    body = {"number": args.number, "room": args.room, "language": args.language}
    if args.pin:
        body["pin"] = args.pin
    admin_request(args, config, "POST", "/api/v1/sip/dispatch", body)
    print(f"{args.number} -> {args.room or 'PIN prompt'}{' (with its PIN)' if args.pin else ''}")


def _dispatch_list(args: argparse.Namespace, config: Config) -> None:
    rules = admin_request(args, config, "GET", "/api/v1/sip/dispatch")["rules"]
    if not rules:
        print("no dispatch rules")
    for r in rules:
        pin = "  PIN ••••" if r.get("pin") else ""
        print(f"{r['number']:<24} -> {r['room'] or 'PIN prompt'}  {r['language'] or ''}{pin}")


def _dispatch_delete(args: argparse.Namespace, config: Config) -> None:
    number = urllib.parse.quote(args.number, safe="")
    admin_request(args, config, "DELETE", f"/api/v1/sip/dispatch/{number}")
    print(f"rule {args.number} deleted")
