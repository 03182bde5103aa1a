"""Access tokens: what verifies, and that the verified-token cache never outlives a token's rules."""

import time

import jwt

from accounts import tokens


def test_a_token_verifies_to_its_claims():
    token, ttl = tokens.token_issue(user_id="u-1", token_version=3, ttl_seconds=60)
    claims = tokens.token_verify(token)
    assert claims["sub"] == "u-1" and claims["ver"] == 3 and claims["exp"] - claims["iat"] == ttl == 60


def test_a_cached_token_is_refused_once_it_expires(monkeypatch):
    token, _ = tokens.token_issue(user_id="u-2", token_version=0, ttl_seconds=5)
    assert tokens.token_verify(token) is not None  # verified and cached
    later = time.time() + 6
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    assert tokens.token_verify(token) is None


def test_a_cached_token_is_refused_after_the_signing_key_changes(settings):
    token, _ = tokens.token_issue(user_id="u-3", token_version=0)
    assert tokens.token_verify(token) is not None
    settings.JWT_SIGNING_KEY = "another-signing-key-" + "x" * 32
    assert tokens.token_verify(token) is None


def test_forged_tampered_and_incomplete_tokens_are_refused(settings):
    good, _ = tokens.token_issue(user_id="u-4", token_version=0)
    forged = jwt.encode({"sub": "u-4", "iat": 1, "exp": 2**40, "ver": 0}, "not-our-key-" + "y" * 32, algorithm="HS256")
    header, payload, signature = good.split(".")
    tampered = ".".join([header, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), signature])
    no_version = jwt.encode({"sub": "u-4", "iat": 1, "exp": 2**40}, settings.JWT_SIGNING_KEY, algorithm="HS256")
    none_alg = jwt.encode({"sub": "u-4", "iat": 1, "exp": 2**40, "ver": 0}, None, algorithm="none")
    for token in (forged, tampered, no_version, none_alg, "", "a.b.c"):
        assert tokens.token_verify(token) is None, token
