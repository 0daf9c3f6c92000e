"""Digest authentication (RFC 7616): the RFC's worked example, nonces, and no user enumeration."""

import pytest

from protocols.sip.digest import (
    MD5,
    SHA_256,
    DigestError,
    DigestServer,
    answer_challenge,
    choose_challenge,
    compute_response,
    parse_digest,
)
from protocols.sip.message import parse_message, serialize

# RFC 7616 section 3.9.1.
RFC_EXAMPLE = dict(
    username="Mufasa",
    realm="http-auth@example.org",
    password="Circle of Life",
    method="GET",
    uri="/dir/index.html",
    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    nc="00000001",
    qop="auth",
)
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"

SECRET = b"0123456789abcdef0123456789abcdef"
PASSWORDS = {"alice": "wonderland"}
NOW = 1_700_000_000.0

REGISTER = (
    b"REGISTER sip:rondpoint.example SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:%s@rondpoint.example>;tag=456248\r\n"
    b"To: <sip:%s@rondpoint.example>\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:%s@192.0.2.10>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def register_for(user: str):
    raw = REGISTER % (user.encode(), user.encode(), user.encode())
    return parse_message(raw)


def server(**kwargs) -> DigestServer:
    return DigestServer("rondpoint.example", SECRET, **kwargs)


def credentials(
    challenge: str, user: str, password: str, uri: str = "sip:rondpoint.example"
) -> str:
    return answer_challenge(challenge, "REGISTER", uri, user, password, cnonce="0a4f113b")


def test_rfc7616_example_sha256_response():
    response = compute_response(algorithm=SHA_256, **RFC_EXAMPLE)
    assert response == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_rfc7616_example_md5_response():
    response = compute_response(algorithm=MD5, **RFC_EXAMPLE)
    assert response == "8ca523f5e9506fed4657c9700eebdbec"


def test_client_answers_rfc7616_example_challenge():
    challenge = (
        'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
        f'nonce="{RFC_EXAMPLE["nonce"]}", opaque="{RFC_OPAQUE}"'
    )
    value = answer_challenge(
        challenge,
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle of Life",
        cnonce=RFC_EXAMPLE["cnonce"],
    )
    params = parse_digest(value)
    assert params["response"] == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"
    assert params["opaque"] == RFC_OPAQUE
    assert params["algorithm"] == "SHA-256"


def test_parse_digest_unescapes_quoted_strings():
    params = parse_digest('Digest realm="a \\"quoted\\" realm", nonce="n,1", qop=auth')
    assert params == {"realm": 'a "quoted" realm', "nonce": "n,1", "qop": "auth"}


def test_parse_digest_refuses_other_schemes():
    with pytest.raises(DigestError):
        parse_digest('Basic realm="x"')


def test_challenge_offers_sha256_before_md5():
    values = server().challenge(NOW)
    algorithms = [parse_digest(v)["algorithm"] for v in values]
    assert algorithms == ["SHA-256", "MD5"]
    assert all(parse_digest(v)["qop"] == "auth" for v in values)


def test_client_prefers_sha256_challenge():
    values = server().challenge(NOW)
    assert parse_digest(choose_challenge(list(reversed(values))))["algorithm"] == "SHA-256"


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_right_password_is_accepted(index):
    digest = server()
    challenge = digest.challenge(NOW)[index]
    authorization = credentials(challenge, "alice", "wonderland")
    assert digest.verify("REGISTER", authorization, PASSWORDS.get, now=NOW + 1) == "alice"


def test_wrong_password_is_refused():
    digest = server()
    authorization = credentials(digest.challenge(NOW)[0], "alice", "guess")
    verdict = digest.check("REGISTER", authorization, PASSWORDS.get, now=NOW + 1)
    assert verdict.user is None
    assert verdict.stale is False


def test_digest_for_another_method_is_refused():
    digest = server()
    authorization = credentials(digest.challenge(NOW)[0], "alice", "wonderland")
    assert digest.verify("INVITE", authorization, PASSWORDS.get, now=NOW + 1) is None


def test_missing_or_garbled_authorization_is_refused():
    digest = server()
    assert digest.verify("REGISTER", None, PASSWORDS.get, now=NOW) is None
    assert digest.verify("REGISTER", "Digest garbage", PASSWORDS.get, now=NOW) is None


def test_expired_nonce_with_right_password_is_stale():
    digest = server(nonce_lifetime=60)
    authorization = credentials(digest.challenge(NOW)[0], "alice", "wonderland")
    verdict = digest.check("REGISTER", authorization, PASSWORDS.get, now=NOW + 61)
    assert verdict.user is None
    assert verdict.stale is True
    assert "stale=true" in digest.challenge(NOW + 61, stale=verdict.stale)[0]


def test_expired_nonce_with_wrong_password_is_not_stale():
    digest = server(nonce_lifetime=60)
    authorization = credentials(digest.challenge(NOW)[0], "alice", "guess")
    assert digest.check("REGISTER", authorization, PASSWORDS.get, now=NOW + 61).stale is False


def test_nonce_from_another_secret_is_refused():
    other = DigestServer("rondpoint.example", b"another secret, also 32 bytes...")
    authorization = credentials(other.challenge(NOW)[0], "alice", "wonderland")
    verdict = server().check("REGISTER", authorization, PASSWORDS.get, now=NOW + 1)
    assert verdict.user is None
    assert verdict.stale is False


def test_tampered_nonce_timestamp_is_refused():
    digest = server(nonce_lifetime=60)
    nonce = digest.make_nonce(NOW)
    forged = ("A" if nonce[0] != "A" else "B") + nonce[1:]
    assert digest.nonce_issued_at(nonce) == NOW
    assert digest.nonce_issued_at(forged) is None


def test_nonce_from_the_future_is_refused():
    digest = server()
    authorization = credentials(digest.challenge(NOW + 3600)[0], "alice", "wonderland")
    assert digest.verify("REGISTER", authorization, PASSWORDS.get, now=NOW) is None


def test_unknown_user_is_looked_up_and_refused_like_a_wrong_password():
    digest = server()
    looked_up = []

    def lookup(user):
        looked_up.append(user)
        return PASSWORDS.get(user)

    known = digest.check(
        "REGISTER", credentials(digest.challenge(NOW)[0], "alice", "x"), lookup, now=NOW
    )
    unknown = digest.check(
        "REGISTER", credentials(digest.challenge(NOW)[0], "mallory", "x"), lookup, now=NOW
    )
    assert known == unknown
    assert looked_up == ["alice", "mallory"]


def test_unknown_user_with_expired_nonce_looks_like_known_user_with_wrong_password():
    digest = server(nonce_lifetime=60)
    known = digest.check(
        "REGISTER", credentials(digest.challenge(NOW)[0], "alice", "x"), PASSWORDS.get, now=NOW + 90
    )
    unknown = digest.check(
        "REGISTER", credentials(digest.challenge(NOW)[0], "bob", "x"), PASSWORDS.get, now=NOW + 90
    )
    assert known == unknown


def test_401_for_known_and_unknown_user_differ_only_by_nonce():
    digest = server()
    answers = []
    for user in ("alice", "mallory"):
        request = register_for("alice")  # svwar varies the user only in credentials here
        authorization = credentials(digest.challenge(NOW)[0], user, "guess")
        verdict = digest.check("REGISTER", authorization, PASSWORDS.get, now=NOW)
        assert verdict.user is None
        response = digest.unauthorized(request, NOW, stale=verdict.stale, to_tag="gw1")
        answers.append(serialize(response))
    first, second = answers
    assert first != second
    nonce_first = parse_digest(parse_message(first).headers.get("WWW-Authenticate"))["nonce"]
    nonce_second = parse_digest(parse_message(second).headers.get("WWW-Authenticate"))["nonce"]
    assert first.replace(nonce_first.encode(), b"N") == second.replace(nonce_second.encode(), b"N")


def test_401_for_unregistered_and_registered_extension_differ_only_by_nonce():
    digest = server()
    first = serialize(digest.unauthorized(register_for("alice"), NOW, to_tag="gw1"))
    second = serialize(digest.unauthorized(register_for("zzzz"), NOW, to_tag="gw1"))
    nonce_first = parse_digest(parse_message(first).headers.get("WWW-Authenticate"))["nonce"]
    nonce_second = parse_digest(parse_message(second).headers.get("WWW-Authenticate"))["nonce"]
    normalised = [
        first.replace(nonce_first.encode(), b"N").replace(b"alice", b"U"),
        second.replace(nonce_second.encode(), b"N").replace(b"zzzz", b"U"),
    ]
    assert normalised[0] == normalised[1]


def test_unauthorized_is_401_with_both_challenges():
    response = server().unauthorized(register_for("alice"), NOW, to_tag="gw1")
    assert response.status == 401
    assert len(response.headers.get_all("WWW-Authenticate")) == 2


def test_proxy_challenge_is_407_with_proxy_authenticate():
    response = server().unauthorized(register_for("alice"), NOW, proxy=True, to_tag="gw1")
    assert response.status == 407
    assert len(response.headers.get_all("Proxy-Authenticate")) == 2
    assert response.headers.get("WWW-Authenticate") is None


def test_opaque_mismatch_is_refused():
    digest = server()
    challenge = digest.challenge(NOW)[0].replace(digest.opaque, "somethingelse")
    authorization = credentials(challenge, "alice", "wonderland")
    assert digest.verify("REGISTER", authorization, PASSWORDS.get, now=NOW) is None


def test_algorithm_not_offered_is_refused():
    digest = server(algorithms=[SHA_256])
    challenge = digest.challenge(NOW)[0].replace("SHA-256", "MD5")
    authorization = credentials(challenge, "alice", "wonderland")
    assert digest.verify("REGISTER", authorization, PASSWORDS.get, now=NOW) is None


def test_unknown_user_is_refused_even_with_the_stand_in_password():
    digest = server()
    stand_in = digest._dummy_password
    authorization = credentials(digest.challenge(NOW)[0], "mallory", stand_in)
    assert digest.verify("REGISTER", authorization, PASSWORDS.get, now=NOW) is None
