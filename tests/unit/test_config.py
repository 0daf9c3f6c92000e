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
