"""Partner secrets are stored hashed and checked exactly; sign-in failures never echo the secret."""

import pytest
from structlog.testing import capture_logs

from services.domain.credentials import hash_secret, is_secret_hash, verify_secret
from services.domain.partners import PartnerDirectory
from services.domain.signin import AuthError, basic_credentials, basic_header
from services.runtime import authenticate, hash_partner_secret, verify_partner_secret

SECRET = "correct horse battery staple"
DIRECTORY = PartnerDirectory.from_dict(
    {
        "partners": [
            {
                "id": "gp-Y01234",
                "kind": "gp",
                "name": "Surgery",
                "secret_hash": hash_secret(SECRET, iterations=1000),
            }
        ]
    }
)


def test_hash_verifies_the_secret_and_nothing_else() -> None:
    stored = hash_secret(SECRET, iterations=1000)
    assert is_secret_hash(stored)
    assert SECRET not in stored
    assert verify_secret(SECRET, stored)
    assert not verify_secret(SECRET + " ", stored)


def test_same_secret_hashes_differently_each_time() -> None:
    assert hash_secret(SECRET, iterations=1000) != hash_secret(SECRET, iterations=1000)


def test_right_secret_signs_in() -> None:
    assert authenticate(DIRECTORY, "gp-Y01234", SECRET).id == "gp-Y01234"


@pytest.mark.parametrize(
    ("partner", "secret", "reason"),
    [
        ("gp-Y01234", "wrong secret value", "wrong secret"),
        ("gp-Y01234", None, "missing credential"),
        ("gp-A99999", SECRET, "unknown partner"),
    ],
)
def test_wrong_missing_or_unknown_credential_is_refused_and_logged_without_the_secret(
    partner, secret, reason
) -> None:
    with capture_logs() as logs, pytest.raises(AuthError, match=reason):
        authenticate(DIRECTORY, partner, secret)
    assert logs == [
        {
            "event": "auth.refused",
            "partner": partner,
            "reason": logs[0]["reason"],
            "log_level": "warning",
        }
    ]
    assert reason in logs[0]["reason"]
    assert SECRET not in repr(logs)


def test_free_text_given_as_partner_id_never_reaches_the_log() -> None:
    with capture_logs() as logs, pytest.raises(AuthError):
        authenticate(DIRECTORY, "9434765919 Jane Smith", "x")
    assert "Jane" not in repr(logs)


def test_basic_header_round_trips() -> None:
    assert basic_credentials(basic_header("gp-Y01234", SECRET)) == ("gp-Y01234", SECRET)
    assert basic_credentials("Bearer x") == ("", None)
    assert basic_credentials("Basic !!!") == ("", None)


# --- argon2id and two live secrets (the runtime's check) -----------------------------------------


def _rotating(current: str, following: str | None) -> PartnerDirectory:
    entry: dict[str, object] = {
        "id": "gp-Y01234",
        "kind": "gp",
        "name": "High Street Surgery",
        "secret_hash": hash_partner_secret(current),
    }
    if following is not None:
        entry["next_secret_hash"] = hash_partner_secret(following)
    return PartnerDirectory.from_dict({"partners": [entry]})


def test_new_partner_secrets_are_argon2id_hashes() -> None:
    stored = hash_partner_secret(SECRET)
    assert stored.startswith("$argon2id$")
    assert is_secret_hash(stored)
    assert verify_partner_secret(SECRET, stored)
    assert not verify_partner_secret(SECRET + "x", stored)


def test_both_live_secrets_sign_in_while_a_partner_rotates() -> None:
    directory = _rotating("old-secret-of-the-gp", "new-secret-of-the-gp")
    for secret in ("old-secret-of-the-gp", "new-secret-of-the-gp"):
        assert authenticate(directory, "gp-Y01234", secret).id == "gp-Y01234"
    with pytest.raises(AuthError):
        authenticate(directory, "gp-Y01234", "neither-secret-of-the-gp")


def test_once_rotated_the_old_secret_no_longer_signs_in() -> None:
    directory = _rotating("new-secret-of-the-gp", None)
    with pytest.raises(AuthError):
        authenticate(directory, "gp-Y01234", "old-secret-of-the-gp")


def test_a_next_secret_without_a_current_one_is_refused() -> None:
    with pytest.raises(ValueError, match="next_secret_hash needs a secret_hash"):
        PartnerDirectory.from_dict(
            {
                "partners": [
                    {
                        "id": "gp-Y01234",
                        "kind": "gp",
                        "name": "High Street Surgery",
                        "next_secret_hash": hash_partner_secret(SECRET),
                    }
                ]
            }
        )
