"""The Matrix plugin's ``rondpoint matrix`` commands: ``registration`` prints the application
service registration YAML for the homeserver, from the configuration file (no running gateway)."""

from __future__ import annotations

import argparse
import sys

from gateway.cli import CliError
from gateway.config import Config
from gateway.plugins import Commands
from protocols.matrix.config import MatrixConfig
from protocols.matrix.registration import registration_yaml


def add_commands(commands: Commands) -> None:
    matrix = commands.add_parser("matrix", help="the Matrix bridge (application service)")
    actions = matrix.add_subparsers(dest="matrix_command", metavar="ACTION", required=True)
    actions.add_parser(
        "registration",
        help="print the application service registration YAML to give the homeserver",
    ).set_defaults(run=_registration)


def _registration(args: argparse.Namespace, config: Config) -> None:
    matrix: MatrixConfig = config.matrix
    if not matrix.enabled:
        raise CliError(
            "[matrix] homeserver_url, server_name, as_token and hs_token must be configured "
            "(give the file with --config)"
        )
    sys.stdout.write(registration_yaml(matrix, config.base_url))
