"""The federation plugin's ``rondpoint`` commands: ``peer`` (the allow-list) and ``keys`` (this
server's signing keys), through the admin API."""

from __future__ import annotations

import argparse
import time
import urllib.parse
from typing import Any

from gateway.cli import CliError, admin_request, print_safe
from gateway.config import Config
from gateway.plugins import Commands


def add_commands(commands: Commands) -> None:
    peer = commands.add_parser("peer", help="partner servers allowed to link rooms (federation)")
    peer_commands = peer.add_subparsers(dest="peer_command", metavar="ACTION", required=True)
    add = peer_commands.add_parser(
        "add",
        help="allow a partner server, pinning its keys (fetched over HTTPS, or --key)",
        conflict_handler="resolve",  # its --url is the partner's, not the global admin --url
    )
    add.add_argument("peer_name", metavar="NAME", help="its server name, e.g. partner.example")
    add.add_argument(
        "--url", dest="peer_url", default="", help="https://HOST[:PORT] (default: https://NAME)"
    )
    add.add_argument(
        "--room",
        action="append",
        default=[],
        help="a room it may link (repeat; default: every room)",
    )
    add.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KID:X",
        help="pin this key, given out of band, instead of fetching its keys (repeat; "
        "write --key=KID:X when KID starts with '-')",
    )
    add.set_defaults(run=_peer_add)
    peer_commands.add_parser("list", help="list partner servers").set_defaults(run=_peer_list)
    remove = peer_commands.add_parser("remove", help="stop trusting a partner, ending its links")
    remove.add_argument("peer_name", metavar="NAME")
    remove.set_defaults(run=_peer_remove)

    keys = commands.add_parser("keys", help="this server's federation signing keys")
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    keys_commands.add_parser("list", help="list the published keys").set_defaults(run=_keys_list)
    keys_commands.add_parser(
        "rotate", help="sign with a new key; the old one stays published until retired"
    ).set_defaults(run=_keys_rotate)
    retire = keys_commands.add_parser("retire", help="stop publishing an older key")
    retire.add_argument("kid", metavar="KID")
    retire.set_defaults(run=_keys_retire)


def _key_arguments(values: list[str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for value in values:
        kid, _, x = value.partition(":")
        if not kid or not x:
            raise CliError(f"--key {value!r}: write KID:X (the key id, ':', the public key x)")
        keys[kid] = x
    return keys


def _key_lines(keys: list[dict[str, Any]]) -> None:
    for key in keys:
        print_safe(f"  key {key['kid']}  fingerprint {key['fingerprint']}")


def _peer_add(args: argparse.Namespace, config: Config) -> None:
    body: dict[str, Any] = {"name": args.peer_name}
    if args.peer_url:
        body["url"] = args.peer_url
    if args.room:
        body["rooms"] = args.room
    keys = _key_arguments(args.key)
    if keys:
        body["keys"] = keys
    peer = admin_request(args, config, "POST", "/api/v1/federation/peers", body)
    how = "keys as given (strict)" if peer["strict"] else "keys fetched over HTTPS and pinned"
    print_safe(f"peer {peer['name']} added, {how}; rooms: {_rooms(peer)}")
    _key_lines(peer["keys"])


def _rooms(peer: dict[str, Any]) -> str:
    return ", ".join(peer["rooms"]) or "every room"


def _peer_list(args: argparse.Namespace, config: Config) -> None:
    peers = admin_request(args, config, "GET", "/api/v1/federation/peers")["peers"]
    if not peers:
        print("no peers")
    for peer in peers:
        added = time.strftime("%Y-%m-%d %H:%M", time.localtime(peer["added_at"]))
        where = peer["url"] or f"https://{peer['name']}"
        strict = "  strict" if peer["strict"] else ""
        print_safe(f"{peer['name']:<28} {where}  rooms: {_rooms(peer)}  added {added}{strict}")
        _key_lines(peer["keys"])


def _peer_remove(args: argparse.Namespace, config: Config) -> None:
    name = urllib.parse.quote(args.peer_name, safe="")
    admin_request(args, config, "DELETE", f"/api/v1/federation/peers/{name}")
    print_safe(f"peer {args.peer_name} removed")


def _print_keys(keys: list[dict[str, Any]]) -> None:
    for key in keys:
        current = "  current (signs)" if key["current"] else "  published"
        print_safe(f"{key['kid']}  fingerprint {key['fingerprint']}{current}")


def _keys_list(args: argparse.Namespace, config: Config) -> None:
    _print_keys(admin_request(args, config, "GET", "/api/v1/federation/keys")["keys"])


def _keys_rotate(args: argparse.Namespace, config: Config) -> None:
    answer = admin_request(args, config, "POST", "/api/v1/federation/keys/rotate")
    print("signing key rotated; retire the old one once partners have refetched your keys")
    _print_keys(answer["keys"])


def _keys_retire(args: argparse.Namespace, config: Config) -> None:
    kid = urllib.parse.quote(args.kid, safe="")
    admin_request(args, config, "DELETE", f"/api/v1/federation/keys/{kid}")
    print_safe(f"key {args.kid} retired")
