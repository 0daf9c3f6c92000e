"""The federation conformance suite (spec/conformance/federation) run against our own gateway.

de.test (tests/federation/harness.py) is the target; the suite plays conformance.test on
127.0.0.14 with a certificate from the same test CA, which de trusts through
``[federation] ca_file``. The suite allow-lists itself for one room through de's admin API
(``rondpoint peer add conformance.test --url ... --room ...``) and runs as a partner would run it,
in its own pytest process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.federation.certs import issue_cert
from tests.federation.harness import partner_gateways
from tests.gateway_process import ROOT

pytestmark = pytest.mark.interop

SUITE_NAME = "conformance.test"
SUITE_HOST = "127.0.0.14"


@pytest.mark.timeout(600)
def test_our_gateway_passes_the_federation_conformance_suite(tmp_path: Path) -> None:
    with partner_gateways(tmp_path / "gateways", shorts=("de",)) as partners:
        de = partners["de"]
        cert, key = issue_cert(de.ca, tmp_path / "suite-tls", SUITE_NAME, SUITE_HOST)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "spec/conformance/federation",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfEs",
            f"--fed-target={de.base_url}",
            f"--fed-target-ca={de.ca_file}",
            f"--fed-admin-token={de.admin_token}",
            f"--fed-name={SUITE_NAME}",
            f"--fed-host={SUITE_HOST}",
            f"--fed-home={tmp_path / 'suite'}",
            f"--fed-cert={cert}",
            f"--fed-key={key}",
        ]
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=540, check=False
        )
        report = result.stdout[-12000:] + result.stderr[-3000:]
        assert result.returncode == 0, f"{report}\n--- de.test log:\n{de.log_tail(6000)}"
        assert " passed" in result.stdout and " skipped" not in result.stdout, report
