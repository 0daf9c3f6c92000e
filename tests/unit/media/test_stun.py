"""STUN messages (RFC 8489) and the ICE-lite responder (RFC 8445 section 2.5)."""

from gateway.media import stun
from gateway.media.ice import IceLiteAgent


def test_binding_request_round_trips_with_integrity_and_fingerprint() -> None:
    data = stun.binding_request("srv1:cli1", "serverpassword1234567890", use_candidate=True)
    message = stun.parse(data)
    assert message.message_type == stun.BINDING_REQUEST
    assert message.username == "srv1:cli1"
    assert message.has(stun.ATTR_USE_CANDIDATE)
    assert stun.verify_message_integrity(data, b"serverpassword1234567890")
    assert stun.verify_fingerprint(data)
    assert stun.serialize(message, fingerprint=False)[:20] != b""


def test_integrity_check_fails_with_the_wrong_password() -> None:
    data = stun.binding_request("srv1:cli1", "serverpassword1234567890")
    assert not stun.verify_message_integrity(data, b"another-password-123456")


def test_tampered_message_fails_integrity_and_fingerprint() -> None:
    data = bytearray(stun.binding_request("srv1:cli1", "serverpassword1234567890"))
    data[24] ^= 0x01  # inside USERNAME
    assert not stun.verify_message_integrity(bytes(data), b"serverpassword1234567890")
    assert not stun.verify_fingerprint(bytes(data))


def test_xor_mapped_address_round_trips_ipv4_and_ipv6() -> None:
    tid = bytes(range(12))
    for host, port in (("127.0.0.1", 54321), ("2001:db8::1", 3478)):
        value = stun.encode_xor_address(host, port, tid)
        assert stun.decode_xor_address(value, tid) == (host, port)


def test_ice_lite_agent_answers_a_valid_check_with_mapped_address() -> None:
    agent = IceLiteAgent()
    agent.set_remote("cli1", "clientpassword1234567890")
    request = stun.binding_request(f"{agent.local_ufrag}:cli1", agent.local_pwd, use_candidate=True)
    result = agent.handle_request(request, stun.parse(request), ("127.0.0.1", 5000))
    assert result is not None and result.nominated
    response = stun.parse(result.response)
    assert response.message_type == stun.BINDING_SUCCESS
    assert response.transaction_id == stun.parse(request).transaction_id
    assert response.xor_mapped_address == ("127.0.0.1", 5000)
    assert stun.verify_message_integrity(result.response, agent.local_pwd.encode())
    assert stun.verify_fingerprint(result.response)


def test_ice_lite_agent_ignores_checks_with_a_bad_password_or_ufrag() -> None:
    agent = IceLiteAgent()
    agent.set_remote("cli1", "clientpassword1234567890")
    wrong_pwd = stun.binding_request(f"{agent.local_ufrag}:cli1", "x" * 24)
    assert agent.handle_request(wrong_pwd, stun.parse(wrong_pwd), ("127.0.0.1", 1)) is None
    wrong_remote = stun.binding_request(f"{agent.local_ufrag}:other", agent.local_pwd)
    assert agent.handle_request(wrong_remote, stun.parse(wrong_remote), ("127.0.0.1", 1)) is None


def test_non_stun_datagram_is_rejected() -> None:
    assert not stun.is_stun(b"\x80" + bytes(30))
    try:
        stun.parse(b"\x00\x01\x00\x00" + bytes(16))
    except stun.StunError:
        pass
    else:
        raise AssertionError("a header without the magic cookie must not parse")
