"""Which reply subjects a service answers on, and NATS subject checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


RESERVED_REPLY_PREFIXES = ("$SRV.", "$JS.", "$KV.", "$O.", "$SYS.")
"""Reply subjects a service refuses by default (with its own endpoint subjects)."""


_SPACE_OR_WILDCARD = re.compile(r"[\s*>]")


def valid_subject(subject: str) -> bool:
    """Non-empty tokens, no whitespace, no wildcard."""
    # An empty token is an empty subject or a leading, trailing or doubled dot.
    if not subject or subject[0] == "." or subject[-1] == "." or ".." in subject:
        return False
    if subject.isascii() and subject.isprintable():  # every request's reply subject: the only whitespace left is " "
        return " " not in subject and "*" not in subject and ">" not in subject
    return _SPACE_OR_WILDCARD.search(subject) is None


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` matches a NATS ``pattern`` (``*`` one token, ``>`` the rest)."""
    pattern_tokens, tokens = pattern.split("."), subject.split(".")
    for i, token in enumerate(pattern_tokens):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(tokens) == len(pattern_tokens)


@dataclass(frozen=True)
class ReplyPolicy:
    """Which reply subjects a service answers on. NATS lets the caller choose
    where a reply goes, so a caller could aim a reply at another service's
    endpoint or at a subject it may not publish to itself (a confused deputy).
    By default a request is refused (dropped without running the handler,
    counted as an error, logged at warn) when its reply subject is missing,
    holds a wildcard, or equals or lies under one of the service's own
    endpoint subjects or ``$SRV.``, ``$JS.``, ``$KV.``, ``$O.``, ``$SYS.``.
    ``allow_prefixes`` (opt-in) admits only replies starting with one of
    them; ``deny`` (opt-in) refuses replies matching one of its patterns."""

    own_subjects: tuple[str, ...] = ()
    allow_prefixes: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    _refused_prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The reserved prefixes and those under the own subjects, for one ``startswith``."""

    def __post_init__(self) -> None:
        refused = tuple(own + "." for own in self.own_subjects) + RESERVED_REPLY_PREFIXES
        object.__setattr__(self, "_refused_prefixes", refused)

    def refusal(self, reply: str) -> str | None:
        """Why a request with this reply subject is refused, or ``None``."""
        # Every request asks: the common answer (admitted, no deny list) in a few C calls.
        if (
            not self.deny
            and valid_subject(reply)
            and not reply.startswith(self._refused_prefixes)
            and reply not in self.own_subjects
            and (not self.allow_prefixes or reply.startswith(self.allow_prefixes))
        ):
            return None
        return self._reason(reply)

    def _reason(self, reply: str) -> str | None:
        """:meth:`refusal` by each rule in turn, naming the first that refuses."""
        if not reply:
            return "no reply subject"
        if not valid_subject(reply):
            return f"reply subject {reply!r} has a wildcard, a space or an empty token"
        for own in self.own_subjects:
            if reply == own or reply.startswith(own + "."):
                return f"reply subject {reply!r} lies under endpoint subject {own!r}"
        reserved = next((p for p in RESERVED_REPLY_PREFIXES if reply.startswith(p)), None)
        if reserved is not None:
            return f"reply subject {reply!r} lies under {reserved!r}"
        if self.allow_prefixes and not any(reply.startswith(p) for p in self.allow_prefixes):
            return f"reply subject {reply!r} does not start with an allowed prefix"
        denied = next((p for p in self.deny if subject_matches(p, reply)), None)
        if denied is not None:
            return f"reply subject {reply!r} matches denied pattern {denied!r}"
        return None
