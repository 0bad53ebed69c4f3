"""The MLLP listener under abuse, on real sockets and the real broker: one slow message holds no
other connection, over-large and over-repeated messages are refused unread, stalled and idle
connections are closed, and only the hosts a partner's allow-list names (by network, or over TLS
by client certificate) may publish as it."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer

from connectors.hl7v2.caps import MessageCaps
from connectors.hl7v2.framing import frame
from connectors.hl7v2.listener import ListenerSettings, listener_producer, peer_check
from connectors.kafka_io import read_topic
from schemas import topics as catalogue
from schemas.codec import decode_dead_letter
from tests.integration.test_mllp import (
    PARTNER,
    Address,
    exchange,
    fixture_text,
    listening,
    msa_and_errs,
)
from tests.tls import Pki, make_pki

ROOT = Path(__file__).parents[2]


@pytest.fixture
def producer(topics: str) -> Iterator[KafkaProducer]:
    made = listener_producer()
    yield made
    made.close()


def published(topic: str, idle_s: float = 2.0) -> list[bytes]:
    return [value for _key, value in read_topic(topic, idle_timeout_s=idle_s)]


def closed_by_listener(sock: socket.socket) -> bool:
    """True when the listener closes the connection (read returns end of stream or a reset)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def answered_at(sock: socket.socket) -> tuple[bytes, float]:
    """The first answer read from `sock`, and when it arrived."""
    answer = sock.recv(65536)
    return answer, time.monotonic()


def big_slow_message() -> str:
    """A 550 kB message within every cap, but slow to parse: 18 NTE segments of 100 repetitions."""
    notes = "".join(f"NTE|{n}||" + "~".join(["x" * 300] * 100) + "\r" for n in range(1, 19))
    return fixture_text("siu-s12.hl7").replace("RV5-0001", "RV5-BIG") + notes


def test_a_slow_big_message_on_one_connection_holds_no_other_connection(
    producer: KafkaProducer,
) -> None:
    big = big_slow_message()
    assert len(big) > 540_000
    with listening(producer) as address, socket.create_connection(address, timeout=60) as slow:
        slow.sendall(frame(big))
        with ThreadPoolExecutor(max_workers=1) as reader:
            big_answered = reader.submit(answered_at, slow)
            [small] = exchange(address, frame(fixture_text("siu-s13.hl7")), acks=1, timeout_s=30)
            small_at = time.monotonic()
            answer, big_at = big_answered.result(timeout=90)
    assert msa_and_errs(small)[0][1:3] == ["AA", "RV5-0002"]
    assert small_at < big_at, "the small message was answered while the big one was parsed"
    assert b"MSA|AA|RV5-BIG" in answer, "and the big one is answered in its turn"


def test_a_message_over_the_repetition_cap_is_refused_unread_and_kept(
    producer: KafkaProducer,
) -> None:
    message = fixture_text("siu-s12.hl7").replace(
        "9434765919^^^NHS^NH", "~".join(["9434765919^^^NHS^NH"] * 30)
    )
    settings = ListenerSettings(caps=MessageCaps(repetitions=20))
    with listening(producer, settings) as address:
        [ack] = exchange(address, frame(message), acks=1)
    msa, [err] = msa_and_errs(ack)
    assert msa[1:3] == ["AR", "RV5-0001"]
    assert "repeats more than 20 times" in err[8]
    [letter] = [decode_dead_letter(v) for v in published(catalogue.DEADLETTER.name)]
    assert "repeats more than 20 times" in letter.reason
    assert letter.raw == message
    assert published(catalogue.INBOUND.name) == []


def test_an_idle_connection_is_closed(producer: KafkaProducer) -> None:
    with (
        listening(producer, ListenerSettings(idle_timeout_s=0.5)) as address,
        socket.create_connection(address, timeout=10) as sock,
    ):
        assert closed_by_listener(sock)


def test_a_message_stalled_half_way_is_dropped_unanswered_and_unpublished(
    producer: KafkaProducer,
) -> None:
    half = frame(fixture_text("siu-s12.hl7"))[:200]
    with (
        listening(producer, ListenerSettings(read_timeout_s=0.5)) as address,
        socket.create_connection(address, timeout=10) as sock,
    ):
        sock.sendall(half)
        assert closed_by_listener(sock)
    assert published(catalogue.INBOUND.name) == []
    assert published(catalogue.DEADLETTER.name) == []


def test_connections_over_the_cap_are_closed_and_those_within_it_served(
    producer: KafkaProducer,
) -> None:
    with listening(producer, ListenerSettings(max_connections=1)) as address:
        with socket.create_connection(address, timeout=30) as first:
            first.sendall(frame(fixture_text("siu-s12.hl7")))
            assert b"MSA|AA|RV5-0001" in first.recv(65536)
            with socket.create_connection(address, timeout=10) as second:
                assert closed_by_listener(second)
        # the first is closed now: room for another
        [ack] = exchange(address, frame(fixture_text("siu-s13.hl7")), acks=1)
    assert msa_and_errs(ack)[0][1] == "AA"


def directory_with_peers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, peers: dict[str, list[str]]
) -> None:
    """The demo partner directory with mht-rv5's mllp_peers set, as CONCORD_PARTNERS."""
    data = yaml.safe_load((ROOT / "deploy" / "demo" / "partners.yaml").read_text())
    for entry in data["partners"]:
        if entry["id"] == PARTNER:
            entry["mllp_peers"] = peers
    path = tmp_path / "partners.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("CONCORD_PARTNERS", str(path))


def test_a_host_not_on_the_allow_list_is_refused_before_anything_is_published(
    producer: KafkaProducer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory_with_peers(tmp_path, monkeypatch, {"networks": ["192.0.2.0/24"]})
    settings = ListenerSettings()
    with (
        listening(producer, settings, peer_check(PARTNER, settings)) as address,
        socket.create_connection(address, timeout=10) as sock,
    ):
        sock.sendall(frame(fixture_text("siu-s12.hl7")))
        assert closed_by_listener(sock), "closed unanswered"
    assert published(catalogue.INBOUND.name) == []
    assert published(catalogue.DEADLETTER.name) == []


def tls_settings(pki: Pki) -> ListenerSettings:
    return ListenerSettings(
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
        tls_client_ca_file=str(pki.ca),
    )


def tls_exchange(address: Address, pki: Pki, payload: bytes) -> bytes:
    """Send over TLS with the test client certificate (subject CN=concord-hub); what came back."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    with (
        socket.create_connection(address, timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(payload)
        try:
            return sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return b""


def test_over_tls_a_client_certificate_on_the_allow_list_publishes(
    producer: KafkaProducer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path / "pki")
    directory_with_peers(tmp_path, monkeypatch, {"certificate_subjects": ["CN=concord-hub"]})
    settings = tls_settings(pki)
    with listening(producer, settings, peer_check(PARTNER, settings)) as address:
        answer = tls_exchange(address, pki, frame(fixture_text("siu-s12.hl7")))
        with socket.create_connection(address, timeout=10) as plain:
            plain.sendall(frame(fixture_text("siu-s13.hl7")))
            assert closed_by_listener(plain), "plain TCP is not answered on a TLS listener"
    assert b"MSA|AA|RV5-0001" in answer
    assert len(published(catalogue.INBOUND.name)) == 2, "the S12's Patient and Appointment only"


def test_over_tls_a_certificate_subject_not_on_the_allow_list_is_refused(
    producer: KafkaProducer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path / "pki")
    directory_with_peers(tmp_path, monkeypatch, {"certificate_subjects": ["CN=rv5-engine"]})
    settings = tls_settings(pki)
    with listening(producer, settings, peer_check(PARTNER, settings)) as address:
        assert tls_exchange(address, pki, frame(fixture_text("siu-s12.hl7"))) == b""
    assert published(catalogue.INBOUND.name) == []


def test_an_allow_list_of_subjects_needs_the_listener_to_ask_for_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory_with_peers(tmp_path, monkeypatch, {"certificate_subjects": ["CN=rv5-engine"]})
    with pytest.raises(ValueError, match="CONCORD_MLLP_TLS_CLIENT_CA_FILE"):
        peer_check(PARTNER, ListenerSettings())
