"""Optional endpoint authentication: a bearer token that callers must present.

::

    deploy():  os.environ[secret_env] ──sha256──> digest ──> the ingress (never the token itself)
    HTTP:      Authorization: Bearer <token> ──sha256──> compare_digest(digest) ──> 401 or on
    handle:    EndpointHandle.predict reads os.environ[secret_env] in the caller ──> same check

Only the SHA-256 digest of the token travels to the ingress, so the secret is in neither the Serve
application config nor the Ray dashboard. Digests are compared in constant time. Changing the
token takes effect at the next ``deploy()`` or ``update()``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from ainative import config, errors

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MIN_TOKEN_CHARS = 16
SCHEME = "Bearer"


@config.config_dataclass
class TokenAuth:
    """Bearer-token authentication of an endpoint: ``Endpoint(auth=TokenAuth(secret_env="X"))``."""

    secret_env: str
    """Name of the environment variable holding the token, read where the endpoint is deployed
    and where its Python handle is called (never stored in the spec). A token needs at least 16
    characters; make one with ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``."""

    def __post_init__(self) -> None:
        if not isinstance(self.secret_env, str) or not _ENV_NAME.match(self.secret_env):
            raise errors.ConfigError(
                f"TokenAuth.secret_env must name an environment variable (letters, digits and "
                f"'_', not starting with a digit, 1-128 characters), got {self.secret_env!r}",
                field="secret_env", value=self.secret_env)

    def token(self) -> str:
        """The token from ``$secret_env``; ConfigError naming the variable when unset or short."""
        value = os.environ.get(self.secret_env)
        if value is None or not value.strip():
            raise errors.ConfigError(
                f"TokenAuth: environment variable {self.secret_env} is not set (or empty); set it "
                "to the endpoint's token where the endpoint is deployed and called",
                field="secret_env", value=self.secret_env)
        value = value.strip()
        if len(value) < MIN_TOKEN_CHARS:
            raise errors.ConfigError(
                f"TokenAuth: the token in {self.secret_env} has {len(value)} characters; use at "
                f"least {MIN_TOKEN_CHARS} (e.g. secrets.token_urlsafe(32))",
                field="secret_env", value=self.secret_env)
        return value

    def digest(self) -> str:
        """What the ingress keeps: the token's SHA-256, hex."""
        return digest_of(self.token())

    def header(self) -> dict[str, str]:
        """The HTTP header a client sends."""
        return {"Authorization": f"{SCHEME} {self.token()}"}


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == SCHEME.lower() and token else None


def check(expected_digest: str | None, token: str | None) -> bool:
    """True when no auth is configured, or ``token`` matches. Both sides are SHA-256 digests of
    one length, compared with ``hmac.compare_digest``: the time taken says nothing about the
    token."""
    if expected_digest is None:
        return True
    if token is None:
        return False
    return hmac.compare_digest(digest_of(token), expected_digest)
