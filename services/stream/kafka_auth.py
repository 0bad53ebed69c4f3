"""faust's broker credentials from the CONCORD_KAFKA_* settings: the same TLS and SASL as every
other Kafka client of the hub (services.runtime.kafka_client_config)."""

from __future__ import annotations

from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from services.runtime import (
    AsyncKafkaOAuthToken,
    config,
    kafka_password,
    kafka_ssl_context,
    oauth_client,
)


def broker_credentials() -> CredentialsT | None:
    """faust's credentials for the configured protocol; None in plaintext."""
    current = config()
    protocol, context = current.kafka_security_protocol, kafka_ssl_context()
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return SSLCredentials(context)
    if current.kafka_sasl_mechanism == "OAUTHBEARER":
        return OAuthCredentials(oauth_cb=AsyncKafkaOAuthToken(oauth_client()), ssl_context=context)
    return SASLCredentials(
        username=current.kafka_username,
        password=kafka_password(),
        ssl_context=context,
        mechanism=current.kafka_sasl_mechanism,
    )
