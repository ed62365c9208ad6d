"""Kubernetes names, labels and secrets: the syntax rules the API server enforces, checked early.

Everything here is pure and raises ``ConfigError`` naming the field, the value and the rule, so a
bad label or name is refused before any request is sent:

- object names: DNS-1035 within KubeRay's length limit of the kind (it derives Service and pod
  names from them); ``generateName`` prefixes leave room for the 5 random characters;
- namespaces: DNS-1123 labels (63 characters);
- label keys ``[prefix/]name`` and values (63 characters, alphanumeric at both ends);
- reserved keys: ``ainative.io/*`` and ``app.kubernetes.io/managed-by`` are ours (adoption
  and ``down`` trust them), so user labels may not set them;
- environment variables whose name says secret (``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``,
  ``DB_PASSWORD``, ``WANDB_API_KEY``) must come from a Secret (``secretKeyRef``), never a value;
- names converted lossily (``exp.1`` -> ``exp-1``) get a short hash of the original, so two
  different jobs never map to one object name.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from ainative import errors

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# KubeRay's own limits: it derives Service and Pod names from these objects' names.
MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayService": 47}
GENERATE_SUFFIX = 5  # characters the API server appends to a generateName prefix
RESERVED_PREFIX = "ainative.io/"
RESERVED_KEYS = ("app.kubernetes.io/managed-by",)
SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIALS?|APIKEY)(_|$)",
                         re.IGNORECASE)
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
HASH_CHARS = 6


def _refuse(owner: str, field: str, value: Any, rule: str) -> errors.ConfigError:
    return errors.ConfigError(f"{owner}.{field} {rule}; got {value!r}", field=field, value=value)


def check_name(owner: str, field: str, name: Any, kind: str = "RayCluster") -> None:
    """Raise ConfigError unless ``name`` is a DNS-1035 label within KubeRay's limit for ``kind``."""
    limit = MAX_NAME[kind]
    if not isinstance(name, str) or not DNS_1035.match(name) or len(name) > limit:
        raise _refuse(owner, field, name,
                      f"must be a DNS-1035 name for a {kind} (lower-case letters, digits and '-', "
                      f"starting with a letter, at most {limit} characters)")


def check_generate_name(owner: str, field: str, prefix: Any, kind: str) -> None:
    """A ``generateName`` prefix: the name it generates (prefix + 5 characters) must be valid."""
    limit = MAX_NAME[kind] - GENERATE_SUFFIX
    if not isinstance(prefix, str) or not prefix or len(prefix) > limit or \
            not DNS_1035.match(prefix + "x"):
        raise _refuse(owner, field, prefix,
                      f"must be a {kind} name prefix (lower-case letters, digits and '-', starting "
                      f"with a letter, at most {limit} characters so that the 5 generated ones fit)")


def check_namespace(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, str) or not DNS_1123.match(value) or len(value) > 63:
        raise _refuse(owner, field, value, "must be a DNS-1123 label (lower-case letters, digits "
                      "and '-', alphanumeric at both ends, at most 63 characters)")


def check_label_value(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, str) or len(value) > 63 or (value and not LABEL_NAME.match(value)):
        raise _refuse(owner, field, value, "must be a label value: at most 63 letters, digits, "
                      "'-', '_' or '.', beginning and ending with a letter or digit (or empty)")


def check_label_key(owner: str, field: str, key: Any) -> None:
    if not isinstance(key, str):
        raise _refuse(owner, field, key, "keys must be strings")
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not DNS_1123_SUBDOMAIN.match(prefix)):
        raise _refuse(owner, field, key, "key prefix must be a DNS-1123 subdomain of at most "
                      "253 characters, as in 'example.com/team'")
    if not name or len(name) > 63 or not LABEL_NAME.match(name):
        raise _refuse(owner, field, key, "key name must be at most 63 letters, digits, '-', '_' "
                      "or '.', beginning and ending with a letter or digit")


def check_user_labels(owner: str, field: str, labels: Any) -> None:
    """User labels: valid syntax, and none of the keys that ainative owns."""
    if labels is None:
        return
    if not isinstance(labels, Mapping):
        raise _refuse(owner, field, labels, "must map label keys to values")
    for key, value in labels.items():
        check_label_key(owner, field, key)
        if key.startswith(RESERVED_PREFIX) or key in RESERVED_KEYS:
            raise _refuse(owner, field, key,
                          f"may not set {key!r}: keys under '{RESERVED_PREFIX}' and "
                          f"{list(RESERVED_KEYS)} are reserved for ainative (use owner= to set "
                          f"{RESERVED_PREFIX}owner)")
        check_label_value(owner, f"{field}[{key!r}]", value)


def check_plain_env(owner: str, field: str, env: Mapping[str, Any] | None) -> None:
    """Refuse a plain value for an environment variable whose name says it is a secret."""
    for name in env or {}:
        if isinstance(name, str) and SECRET_NAME.search(name):
            raise _refuse(owner, field, name,
                          "looks like a secret (its name matches TOKEN|SECRET|PASSWORD|KEY) and "
                          "would be written into the manifest in plain text; put it in a "
                          "Kubernetes Secret and pass secret_env={" f"{name!r}: 'SECRET:KEY'" "}")


def parse_secret_ref(owner: str, field: str, env_name: Any, ref: Any) -> tuple[str, str]:
    """``"secret-name:key"`` -> ``(secret name, key)``."""
    if not isinstance(env_name, str) or not env_name:
        raise _refuse(owner, field, env_name, "names must be non-empty strings")
    name, sep, key = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    if not sep or not DNS_1123_SUBDOMAIN.match(name) or len(name) > 253 or \
            not SECRET_KEY.match(key):
        raise _refuse(owner, f"{field}[{env_name!r}]", ref,
                      "must be 'SECRET:KEY', a Secret name (DNS-1123 subdomain) and a key in it, "
                      "e.g. 'hf-token:token'")
    return name, key


def short_hash(text: str, chars: int = HASH_CHARS) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def object_name(name: str, kind: str) -> str:
    """A user's name (letters, digits, '.', '_', '-') as a KubeRay object name (DNS-1035 within
    the kind's limit). Kept as is when already valid; otherwise converted and suffixed with a
    hash of the original, so that ``exp.1`` and ``exp_1`` do not both become ``exp-1``."""
    limit = MAX_NAME[kind]
    if DNS_1035.match(name) and len(name) <= limit:
        return name
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not text[:1].isalpha():
        text = f"x-{text}"
    suffix = f"-{short_hash(name)}"
    text = text[:limit - len(suffix)].rstrip("-")
    return f"{text}{suffix}"


def payload_hash(spec: Mapping[str, Any]) -> str:
    """A stable hash of a manifest's ``spec`` (canonical JSON), written as an annotation."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()[:32]
