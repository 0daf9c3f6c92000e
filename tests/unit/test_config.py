"""Configuration: embedded defaults, TOML overrides, and refusals that name file, key and rule."""

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rondpoint.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    config = load_config(None)
    assert config.http.host == "127.0.0.1"
    assert config.http.port == 8080
    assert config.server.data_dir == "rondpoint-data"
    assert config.base_url == "http://127.0.0.1:8080"


def test_file_overrides_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[http]\nport = 9090\n[log]\nformat = "json"\n'))
    assert config.http.port == 9090
    assert config.log.format == "json"
    assert config.media.port == 40000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[http]\nport = 70000\n", "'http.port' must be a port"),
        ('[http]\nport = "80"\n', "'http.port' must be an integer"),
        ("[http]\nbogus = 1\n", "unknown key 'http.bogus'"),
        ("[nosuch]\nx = 1\n", "unknown key 'nosuch'"),
        ('[log]\nformat = "xml"\n', "'log.format' is 'xml'; allowed: text, json"),
        ('[media]\nhost = "not-an-ip"\n', "'media.host' must be an IP address"),
        ('[rooms]\ndemo_room = "Bad Name"\n', "'rooms.demo_room' must match"),
        ("[rooms]\nreconnect_grace = -1\n", "'rooms.reconnect_grace' must be between 0"),
        ("[rooms]\nreconnect_grace = 301\n", "'rooms.reconnect_grace' must be between 0"),
        ("[rooms]\nmax_reconnecting = 0\n", "'rooms.max_reconnecting' must be"),
        ("[limits]\nreconnecting_participants = 0\n", "'limits.reconnecting_participants'"),
        ("[http\nport = 1\n", "not valid TOML"),
        ('[http]\ntls_cert = "c.pem"\n', "must be set together"),
    ],
)
def test_invalid_file_names_file_key_and_rule(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[sip]\nlanguage = "de"\n', "'sip.language' is 'de'; allowed: fr, en"),
        ("[sip]\ntls_port = 5061\n", "'sip.tls_port' needs 'sip.tls_cert'"),
        (
            "[sip]\nrtp_port_start = 30000\nrtp_port_end = 20000\n",
            "'sip.rtp_port_end' must be above",
        ),
        ('[sip]\npublic_ip = "gw.example.fr"\n', "'sip.public_ip' must be an IP address"),
        ('[sip]\ndomain = "sip example.fr"\n', "'sip.domain' must be a host name"),
    ],
)
def test_invalid_sip_settings_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        load_config(write(tmp_path, text))


def test_dispatch_rules_come_as_arrays_of_tables(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[[sip.dispatch]]\nnumber = "0140506070"\nroom = "cabinet"\nlanguage = "fr"\n'
            '[[sip.dispatch]]\nnumber = "*"\n',
        )
    )
    assert [(r.number, r.room, r.language) for r in config.sip.dispatch] == [
        ("0140506070", "cabinet", "fr"),
        ("*", "", ""),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[sip.dispatch]]\nnumber = "01 40"\n', "'sip.dispatch[0].number' must be"),
        (
            '[[sip.dispatch]]\nnumber = "1"\nroom = "Bad Room"\n',
            "'sip.dispatch[0].room' must match",
        ),
        ('[[sip.dispatch]]\nnumber = "1"\nlanguage = "de"\n', "'sip.dispatch[0].language' is 'de'"),
        ('[[sip.dispatch]]\nnumber = "1"\nroute = "x"\n', "unknown key 'sip.dispatch[0].route'"),
        ('[sip]\ndispatch = "0140"\n', "'sip.dispatch' must be a list of tables"),
    ],
)
def test_bad_dispatch_rules_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, text))


# [[tokens.issuers]] ---------------------------------------------------------------------------
ISSUER_SECRET = "issuer-secret-must-never-show-0123456789abcdef"


def ed25519_public_pem(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    path = tmp_path / "portal.pub.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def test_token_issuers_come_as_arrays_of_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIO_LIVEKIT_SECRET", ISSUER_SECRET)
    pem = ed25519_public_pem(tmp_path)
    config = load_config(
        write(
            tmp_path,
            '[[tokens.issuers]]\nkey_id = "APIvisio7Kq2"\nsecret_env = "VISIO_LIVEKIT_SECRET"\n'
            'rooms = ["visio-*", "cabinet"]\n'
            f'[[tokens.issuers]]\nkey_id = "portal"\npublic_key = "{pem}"\nrooms = ["*"]\n'
            f'[[tokens.issuers]]\nkey_id = "intranet"\nsecret = "{ISSUER_SECRET}"\n'
            'rooms = ["intranet-?"]\n',
        )
    )
    issuers = config.tokens.issuers
    assert [(i.key_id, i.rooms) for i in issuers] == [
        ("APIvisio7Kq2", ["visio-*", "cabinet"]),
        ("portal", ["*"]),
        ("intranet", ["intranet-?"]),
    ]
    assert ISSUER_SECRET not in repr(config)
    assert load_config(None).tokens.issuers == []


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (f'secret = "{ISSUER_SECRET}"\nrooms = ["*"]\n', "'tokens.issuers[0].key_id' is required"),
        (
            f'key_id = "rondpoint"\nsecret = "{ISSUER_SECRET}"\nrooms = ["*"]\n',
            "is the gateway's own key id",
        ),
        (
            f'key_id = "has space"\nsecret = "{ISSUER_SECRET}"\nrooms = ["*"]\n',
            "'tokens.issuers[0].key_id' must be 1 to 128",
        ),
        ('key_id = "k"\nrooms = ["*"]\n', "needs exactly one of 'secret', 'secret_env'"),
        (
            f'key_id = "k"\nsecret = "{ISSUER_SECRET}"\nsecret_env = "X"\nrooms = ["*"]\n',
            "it has 'secret' and 'secret_env'",
        ),
        (f'key_id = "k"\nsecret = "{ISSUER_SECRET}"\n', "'tokens.issuers[0].rooms' is required"),
        (
            f'key_id = "k"\nsecret = "{ISSUER_SECRET}"\nrooms = "visio-*"\n',
            "'tokens.issuers[0].rooms' must be a list",
        ),
        (
            f'key_id = "k"\nsecret = "{ISSUER_SECRET}"\nrooms = ["Salle A"]\n',
            "'tokens.issuers[0].rooms' has 'Salle A'",
        ),
        ('key_id = "k"\nsecret = "short-secret"\nrooms = ["*"]\n', "at least 32 characters"),
        (
            'key_id = "k"\nsecret_env = "RONDPOINT_TEST_UNSET_SECRET"\nrooms = ["*"]\n',
            "RONDPOINT_TEST_UNSET_SECRET is not set",
        ),
        ('key_id = "k"\nsecret_env = "not a name"\nrooms = ["*"]\n', "name of an environment"),
        (
            'key_id = "k"\npublic_key = "/nonexistent/k.pem"\nrooms = ["*"]\n',
            "cannot read /nonexistent/k.pem",
        ),
        (
            'key_id = "k"\nsecret = 42\nrooms = ["*"]\n',
            "'tokens.issuers[0].secret' must be a string",
        ),
        (
            'key_id = "k"\nalgorithm = "none"\nrooms = ["*"]\n',
            "unknown key 'tokens.issuers[0].algorithm'",
        ),
    ],
)
def test_bad_token_issuers_are_refused_without_showing_the_secret(
    tmp_path: Path, table: str, expected: str
) -> None:
    path = write(tmp_path, "[[tokens.issuers]]\n" + table)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)
    assert ISSUER_SECRET not in str(error.value)
    assert "short-secret" not in str(error.value) and "not 42" not in str(error.value)


def test_the_same_issuer_cannot_be_registered_twice(tmp_path: Path) -> None:
    table = f'[[tokens.issuers]]\nkey_id = "k"\nsecret = "{ISSUER_SECRET}"\nrooms = ["*"]\n'
    with pytest.raises(ConfigError, match="registered twice") as error:
        load_config(write(tmp_path, table + table))
    assert ISSUER_SECRET not in str(error.value)


def test_a_private_key_given_as_public_key_is_refused_and_not_shown(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    key_path = tmp_path / "private.pem"
    key_path.write_bytes(pem)
    path = write(
        tmp_path, f'[[tokens.issuers]]\nkey_id = "k"\npublic_key = "{key_path}"\nrooms = ["*"]\n'
    )
    with pytest.raises(ConfigError, match="public half only") as error:
        load_config(path)
    assert pem.decode().splitlines()[1] not in str(error.value)


def test_admin_commands_reach_the_listener_not_the_public_url(tmp_path: Path) -> None:
    path = tmp_path / "rondpoint.toml"
    path.write_text(
        '[server]\npublic_url = "https://visio-gw.example.gouv.fr"\n'
        '[http]\nhost = "0.0.0.0"\nport = 8443\n'
    )
    config = load_config(path)
    assert config.base_url == "https://visio-gw.example.gouv.fr"
    assert config.listener_url == "http://127.0.0.1:8443"
