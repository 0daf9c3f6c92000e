"""Every library the gateway imports at run time is a declared dependency, and the private members of
aiortc, aioice and pylibsrtp that the code reaches into are still there (pinned in pyproject.toml)."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ("gateway", "protocols")


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        _normalise(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0])
        for line in project["dependencies"]
    }


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[str]:
    """Absolute imports, wherever they are (functions too), except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (name for child in node.orelse for name in _runtime_imports(child))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        yield from _runtime_imports(node)


def _third_party_imports() -> dict[str, set[str]]:
    """Imported module -> the files importing it, for modules outside the stdlib and this project."""
    found: dict[str, set[str]] = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in _runtime_imports(ast.parse(path.read_text(), str(path))):
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in RUNTIME_PACKAGES or top == "__future__":
                    continue
                found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


def _owner(module: str, files: dict[Path, str]) -> str | None:
    """The installed distribution whose files hold ``module`` (namespace packages resolved)."""
    # a module already imported may carry __spec__ = None (find_spec then raises): use its file
    origin = getattr(sys.modules.get(module), "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
    return files.get(Path(origin).resolve()) if origin else None


def test_every_runtime_import_is_a_declared_dependency() -> None:
    files: dict[Path, str] = {}
    for distribution in importlib.metadata.distributions():
        for file in distribution.files or ():
            files[Path(str(distribution.locate_file(file))).resolve()] = _normalise(
                distribution.metadata["Name"]
            )
    declared = _declared()
    undeclared = []
    for module, importers in sorted(_third_party_imports().items()):
        owner = _owner(module, files)
        if owner is None or owner not in declared:
            undeclared.append(
                f"{module} (from {owner or 'no installed distribution'}), "
                f"imported by {', '.join(sorted(importers))}"
            )
    assert not undeclared, (
        "imported at run time but not in pyproject.toml [project].dependencies:\n  "
        + "\n  ".join(undeclared)
    )


def test_the_libraries_whose_private_members_we_use_are_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {
        _normalise(re.split(r"[<>=!~ ]", line, maxsplit=1)[0]): line
        for line in project["dependencies"]
    }
    for name in ("aiortc", "aioice", "pylibsrtp"):
        assert name in pins, f"{name} must be a declared dependency"
        assert "<" in pins[name] and ">=" in pins[name], (
            f"{name} must be pinned to the tested range (>=tested,<next): we use its private members"
        )


def _missing(owner: object, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not hasattr(owner, name)]


def _explain(library: str, where: str, missing: list[str], what: str) -> str:
    version = importlib.metadata.version(library)
    return (
        f"{library} {version} no longer has {', '.join(missing)}, which {where} uses to {what}; "
        f"pin {library} below {version} in pyproject.toml or adapt {where}"
    )


async def test_aiortc_and_aioice_still_have_the_private_members_the_livekit_legs_use() -> None:
    aiortc = pytest.importorskip("aiortc")
    from aioice.ice import CandidatePair, Connection

    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTransceiver("audio").sender
        dtls = sender.transport
        where = "protocols/livekit/media.py"
        missing = _missing(dtls, ("_handle_rtp_data", "_handle_rtcp_data", "_tx_srtp", "transport"))
        assert not missing, _explain(
            "aiortc", where, missing, "take and send SRTP packets as bytes"
        )
        missing = _missing(dtls.transport, ("_connection",))
        assert not missing, _explain("aiortc", where, missing, "reach the ICE connection")
        missing = _missing(sender, ("_track_id", "_ssrc"))
        assert not missing, _explain(
            "aiortc", "protocols/livekit/rtc.py", missing, "match LiveKit track ids and SSRCs"
        )
        connection = dtls.transport._connection
        assert isinstance(connection, Connection)
        missing = _missing(connection, ("_nominated",))
        assert not missing, _explain("aioice", where, missing, "find the nominated candidate pair")
        missing = _missing(CandidatePair, ("remote_addr",))
        assert not missing, _explain("aioice", where, missing, "send to the nominated pair")
    finally:
        await pc.close()


def test_pylibsrtp_still_ships_the_binding_the_native_fast_path_loads() -> None:
    import pylibsrtp

    try:
        import pylibsrtp._binding as binding
    except ImportError:
        pytest.fail(_explain("pylibsrtp", "gateway/media/native.py", ["_binding"], "load libsrtp"))
    where = "gateway/media/native.py"
    assert Path(binding.__file__ or "").exists(), _explain(
        "pylibsrtp", where, ["_binding.__file__"], "load libsrtp"
    )
    assert hasattr(pylibsrtp, "Error"), _explain("pylibsrtp", where, ["Error"], "catch SRTP errors")
