"""Display names (spec 7.1): one sanitiser where names enter, one terminal-safe form for the CLI."""

import pytest

from gateway.rooms.names import MAX_NAME_CHARS, display_name, terminal_safe


def test_an_ordinary_name_is_kept() -> None:
    assert display_name("Chloé Bernard") == "Chloé Bernard"
    assert display_name("محمد علي") == "محمد علي"
    assert display_name("王小明") == "王小明"


def test_ansi_escapes_lose_their_escape_character() -> None:
    name = display_name("\x1b[31mEvil\x1b[0m\x07")
    assert "\x1b" not in name and "\x07" not in name
    assert name == "[31mEvil[0m"


def test_c1_controls_and_delete_are_dropped_and_next_line_is_a_space() -> None:
    assert display_name("A\x7f\x85B\x9bC\x00") == "A BC"


@pytest.mark.parametrize(
    "control",
    [
        "\u202a",
        "\u202b",
        "\u202c",
        "\u202d",
        "\u202e",
        "\u2066",
        "\u2067",
        "\u2068",
        "\u2069",
        "\u200e",
        "\u200f",
        "\u061c",
    ],
)
def test_bidi_controls_are_dropped(control: str) -> None:
    assert display_name(f"Eve{control}gnp.exe") == "Evegnp.exe"


def test_other_format_characters_are_dropped() -> None:
    assert display_name("Al\u200bi\u00adce\ufeff") == "Alice"


def test_joiners_stay_inside_words_only() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert display_name(family) == family
    assert display_name("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") == (
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    )
    assert display_name("\u200dAnna\u200d\u200c \u200c") == "Anna"


def test_lone_surrogates_are_replaced() -> None:
    name = display_name("Bad\ud800Name\udfff")
    assert name == "Bad\ufffdName\ufffd"
    name.encode("utf-8")  # a lone surrogate would raise here


def test_white_space_is_collapsed_and_trimmed() -> None:
    assert display_name("  Jean\t\n\r  Dupont\u2028\u3000 ") == "Jean Dupont"


def test_the_name_is_nfc_normalised() -> None:
    assert display_name("Jose\u0301") == "Jos\u00e9"


def test_the_name_is_capped_at_64_characters() -> None:
    assert display_name("é" * 200) == "é" * MAX_NAME_CHARS
    assert display_name("a" * 63 + " bcd") == "a" * 63  # no trailing space after the cut
    assert len(display_name("\U0001f600" * 100)) == MAX_NAME_CHARS


def test_nothing_displayable_gives_an_empty_name() -> None:
    assert display_name("\u202e\x1b\u200d \t") == ""
    assert display_name("") == ""


def test_terminal_safe_escapes_what_is_not_printable() -> None:
    shown = terminal_safe("\x1b[31mEvil\u202e\ud800 ok é \U000e0001")
    assert shown == "\\u001b[31mEvil\\u202e\\ud800 ok é \\U000e0001"
    shown.encode("ascii", "backslashreplace")  # encodable
    assert "\x1b" not in shown


def test_a_phone_callers_number_is_cleaned_where_its_name_is_made() -> None:
    from protocols.sip.call import masked_name

    assert masked_name("\x1b[31m0612345678\u202e", mask=False) == "Phone [31m0612345678"
    assert masked_name("0612345678", mask=True) == "Phone ••• 78"


def test_a_visio_name_goes_through_the_same_sanitiser() -> None:
    from protocols.visio.bridge import display_name as visio_display_name

    assert visio_display_name("\x1b[31mCamille\u202e", "sub") == "[31mCamille"
    assert visio_display_name("\u202e\u2066", "oidc\u202e-sub") == "oidc-sub"
