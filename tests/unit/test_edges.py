"""Pure rules of the abuse-resistant edges: sign-in's decoy check, the MLLP peer allow-list,
the HL7 shape caps, rate limits, and the edges' settings."""

from __future__ import annotations

import asyncio
import ipaddress
import threading

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY
from hypothesis import given
from hypothesis import strategies as st

from connectors.abuse import EdgeLimits, RateLimits, SignInBusy, SignInPool, edge_limits
from connectors.gateway.guards import Guards, GuardSettings
from connectors.hl7v2.caps import MessageCaps, over_caps
from connectors.hl7v2.listener import listener_settings, reply_to_over_caps
from services.domain.partners import Partner, PartnerDirectory
from services.domain.peers import PeerAllowList, parse_peers, refusal
from services.domain.signin import DECOY_HASH, SignInRefused, check_secret
from services.runtime import hash_partner_secret, verify_partner_secret

MSH = "MSH|^~\\&|RIO|RV5|CONCORD|HUB|20261201093000||SIU^S12^SIU_S12|RV5-0001|P|2.5.1\r"


# --- sign-in --------------------------------------------------------------------------------


def test_the_decoy_hash_has_the_parameters_partner_secrets_are_hashed_with() -> None:
    """So that checking an unknown partner's secret costs what checking a known one's does."""
    assert extract_parameters(DECOY_HASH) == extract_parameters(PasswordHasher().hash("x"))
    assert extract_parameters(DECOY_HASH) == RFC_9106_LOW_MEMORY


def _directory(secret_hash: str | None) -> PartnerDirectory:
    return PartnerDirectory({"gp-A1": Partner("gp-A1", "gp", "Practice", secret_hash)})


def test_an_unknown_partner_id_is_checked_against_the_decoy_as_a_wrong_secret_is_against_its_hash() -> (
    None
):
    checked: list[str] = []

    def verify(secret: str, stored: str) -> bool:
        checked.append(stored)
        return False

    directory = _directory("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g")
    for partner_id in ("gp-A1", "gp-NOBODY"):
        with pytest.raises(SignInRefused, match="unknown partner or wrong secret"):
            check_secret(directory, partner_id, "guess", verify)
    assert checked == [directory.partners["gp-A1"].secret_hash, DECOY_HASH]


def test_a_partner_without_a_secret_is_checked_against_the_decoy_too() -> None:
    checked: list[str] = []
    with pytest.raises(SignInRefused):
        check_secret(_directory(None), "gp-A1", "guess", lambda _s, h: checked.append(h) or False)
    assert checked == [DECOY_HASH]


def test_the_decoy_matches_no_secret_the_runtime_is_likely_to_be_given() -> None:
    for guess in ("", "secret", "concord", "no partner has this secret"):
        assert not verify_partner_secret(guess, DECOY_HASH)


def test_a_proven_partner_signs_in_while_the_sign_in_threads_are_all_busy() -> None:
    """A partner whose secret was already proven never queues behind wrong secrets."""
    secret = "right-secret"
    directory = _directory(hash_partner_secret(secret))
    guards = Guards(GuardSettings(limits=EdgeLimits(sign_in_threads=1, sign_in_queue=1)))
    release = threading.Event()

    async def scenario() -> tuple[object, object, object]:
        first = await guards.sign_in(directory, "gp-A1", secret, "10.0.0.1")  # proves it
        blocked = asyncio.ensure_future(guards.pool.run(release.wait))  # the one thread, held
        await asyncio.sleep(0.05)
        stranger = await guards.sign_in(directory, "gp-A1", "wrong", "10.0.0.2")
        again = await guards.sign_in(directory, "gp-A1", secret, "10.0.0.3")
        release.set()
        await blocked
        return first, stranger, again

    first, stranger, again = asyncio.run(scenario())
    guards.close()
    assert isinstance(first, Partner)
    assert isinstance(again, Partner)
    assert getattr(stranger, "status", None) == 503, "the queue was full: turned away, not queued"


def test_secret_checks_from_one_address_beyond_its_rate_are_429_unchecked() -> None:
    checked: list[str] = []
    directory = _directory(hash_partner_secret("right"))
    limits = EdgeLimits(sign_in_check_rate="2/minute")
    guards = Guards(GuardSettings(limits=limits))

    async def attempt(source: str) -> int:
        refused = await guards.sign_in(directory, "gp-A1", "wrong", source)
        checked.append(source)
        return int(getattr(refused, "status", 0))

    async def scenario() -> list[int]:
        return [await attempt(s) for s in ("1.1.1.1", "1.1.1.1", "1.1.1.1", "2.2.2.2")]

    statuses = asyncio.run(scenario())
    guards.close()
    assert statuses == [401, 401, 429, 401], "another address is not held back"


def test_sign_in_pool_turns_away_beyond_its_queue() -> None:
    pool = SignInPool(threads=1, queue=1)
    release = threading.Event()

    async def scenario() -> None:
        held = asyncio.ensure_future(pool.run(release.wait))
        await asyncio.sleep(0.05)
        with pytest.raises(SignInBusy):
            await pool.run(lambda: None)
        release.set()
        await held

    asyncio.run(scenario())
    pool.close()


# --- rate limits ----------------------------------------------------------------------------


def test_a_rate_counts_per_key_and_says_how_long_to_wait() -> None:
    rates = RateLimits(EdgeLimits(partner_rate="3/minute"))
    assert [rates.hit("partner", "gp-A1") for _ in range(3)] == [None, None, None]
    wait = rates.hit("partner", "gp-A1")
    assert wait is not None
    assert 1 <= wait <= 60
    assert rates.hit("partner", "gp-B2") is None, "each partner has its own count"
    assert rates.check("partner", "gp-B2") is None, "asking does not count"


def test_rate_settings_are_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCORD_RATE_SOURCE", "lots")
    with pytest.raises(ValueError, match="CONCORD_RATE_SOURCE must be a rate such as"):
        edge_limits()
    monkeypatch.setenv("CONCORD_RATE_SOURCE", "50/second")
    monkeypatch.setenv("CONCORD_SIGN_IN_QUEUE", "0")
    with pytest.raises(ValueError, match="CONCORD_SIGN_IN_QUEUE"):
        edge_limits()
    monkeypatch.setenv("CONCORD_SIGN_IN_QUEUE", "8")
    assert edge_limits().source_rate == "50/second"


# --- MLLP peers -----------------------------------------------------------------------------


def test_without_an_allow_list_only_this_machine_may_connect() -> None:
    assert refusal(None, "127.0.0.1", None) is None
    assert refusal(None, "::1", None) is None
    assert "not in the partner's mllp_peers networks" in str(refusal(None, "10.1.2.3", None))


def test_an_allow_list_admits_its_networks_and_certificate_subjects() -> None:
    allowed = parse_peers(
        "partner entry 1",
        {"networks": ["10.20.0.0/24"], "certificate_subjects": ["CN=rv5-engine, O=RV5"]},
    )
    subject = (("commonName", "rv5-engine"), ("organizationName", "RV5"), ("countryName", "GB"))
    assert refusal(allowed, "10.20.0.7", subject) is None
    assert refusal(allowed, "::ffff:10.20.0.7", subject) is None, "IPv4 seen over IPv6"
    assert "networks" in str(refusal(allowed, "10.20.1.7", subject))
    assert "sent none" in str(refusal(allowed, "10.20.0.7", None))
    other = (("commonName", "rv5-engine"), ("organizationName", "Elsewhere"))
    assert "subject is not in" in str(refusal(allowed, "10.20.0.7", other))


def test_certificate_subjects_alone_admit_any_address() -> None:
    allowed = parse_peers("p", {"certificate_subjects": ["CN=engine"]})
    assert refusal(allowed, "192.0.2.9", (("commonName", "engine"),)) is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"networks": ["10.0.0.1/8"]}, "has host bits set"),
        ({"networks": "10.0.0.0/8"}, "must be lists"),
        ({"certificate_subjects": ["engine"]}, "is not NAME=value"),
        ({"hosts": ["a"]}, "unexpected fields: hosts"),
        ({}, "must map networks"),
    ],
)
def test_a_malformed_allow_list_stops_the_directory_loading(entry: object, message: str) -> None:
    data = {"partners": [{"id": "mht-rv5", "kind": "mht", "name": "Trust", "mllp_peers": entry}]}
    with pytest.raises(ValueError, match=message):
        PartnerDirectory.from_dict(data)


@given(st.ip_addresses(v=4), st.integers(min_value=8, max_value=32))
def test_an_address_is_admitted_exactly_when_it_is_in_a_listed_network(
    address: ipaddress.IPv4Address, prefix: int
) -> None:
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    allowed = PeerAllowList((network,))
    assert refusal(allowed, str(address), None) is None
    outside = (
        network.broadcast_address + 1
        if network.broadcast_address < ipaddress.IPv4Address("255.255.255.255")
        else None
    )
    if outside is not None:
        assert refusal(allowed, str(outside), None) is not None


# --- HL7 caps -------------------------------------------------------------------------------


def test_a_message_within_the_caps_passes() -> None:
    assert over_caps(MSH + "PID|1||123^^^RV5^MR~456^^^RV5^MR\r", MessageCaps()) is None


def test_too_many_segments_is_named() -> None:
    text = MSH + "NTE|1||x\r" * 10
    assert over_caps(text, MessageCaps(segments=5)) == "11 segments is over the limit of 5"


def test_too_many_repetitions_of_a_read_field_is_named() -> None:
    text = MSH + "PID|1||" + "~".join(["1^^^RV5^MR"] * 6) + "\r"
    assert "segment 2 (PID) repeats more than 5 times" in str(
        over_caps(text, MessageCaps(repetitions=5))
    )


def test_segments_the_hub_does_not_read_count_only_towards_size() -> None:
    text = MSH + "ZLW|" + "~".join(["a"] * 500) + "\r"
    assert over_caps(text, MessageCaps(repetitions=5, elements=50)) is None


def test_too_many_elements_is_named() -> None:
    text = MSH + "PID|1||" + "^".join(["a"] * 60) + "\r"
    assert "more than 40 fields and components" in str(over_caps(text, MessageCaps(elements=40)))


def test_listener_settings_name_what_is_wrong() -> None:
    assert listener_settings({}).ack_timeout_s == 10.0
    assert listener_settings({"CONCORD_MLLP_MAX_REPETITIONS": "20"}).caps.repetitions == 20
    with pytest.raises(ValueError, match="CONCORD_MLLP_ACK_TIMEOUT_S must be a positive number"):
        listener_settings({"CONCORD_MLLP_ACK_TIMEOUT_S": "soon"})
    with pytest.raises(ValueError, match="together"):
        listener_settings({"CONCORD_MLLP_TLS_CERT_FILE": "cert.pem"})


def test_a_message_over_a_cap_is_refused_ar_and_only_its_head_is_kept() -> None:
    text = MSH + "NTE|1||" + "x" * 200_000 + "\r"
    reply = reply_to_over_caps(text, "a field repeats too often", "mht-rv5", "mllp://peer")
    assert reply.code == "AR"
    assert reply.envelopes == ()
    assert reply.letter is not None
    assert reply.letter.raw.startswith(MSH)
    assert len(reply.letter.raw) < 70_000
    assert "a field repeats too often" in reply.letter.reason
