"""Key templates (PROTOCOL §12.1): the one place keys and object names are
rendered from a request's values, for the server's writes and the clients'
helpers alike. Generated code only extracts the values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidArgumentError

_KEY = re.compile(r"[-/_=.A-Za-z0-9]+", re.ASCII)
_KEY_CHARS = re.compile(r"[-/_=.A-Za-z0-9]*", re.ASCII)


@dataclass(frozen=True)
class KeyField:
    """A ``{path}`` placeholder of a key template: the path as written
    (``tenant.id``, the field a violation names) and, for an enum field, the
    names of its declared values (an undeclared number renders in decimal)."""

    placeholder: str
    enum_names: Mapping[int, str] | None = None


KeySegment = str | KeyField
"""Literal text, or a placeholder."""


def _render_value(field: KeyField, value: object) -> str | None:
    """One placeholder's text (``None``: missing)."""
    if value is None:
        return None
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        if field.enum_names is not None:
            return field.enum_names.get(value, str(value))
        return str(value)
    if isinstance(value, str):
        return value or None
    return str(value) or None


def render_key(segments: Sequence[KeySegment], values: Sequence[object], *, kv: bool = True, method: str | None = None) -> str:
    """Renders a key (or, with ``kv=False``, an object name) from a template's
    ``segments`` and one value per placeholder, in order (PROTOCOL §12.1):
    strings as they are, integers in decimal, ``true``/``false``, enums by
    name. ``None`` (an unset message on the path or an unset field with
    presence) and the empty string are missing. A missing value, or a KV key
    that is not a valid NATS key (``A-Z a-z 0-9 - _ / = .``, no empty token),
    raises :class:`InvalidArgumentError` with a ``BadRequest`` field violation
    naming the placeholder.

    >>> render_key(["user.", KeyField("id")], ["ada"])
    'user.ada'
    >>> render_key([KeyField("kind", {1: "WEB"}), ".", KeyField("n"), ".", KeyField("on")], [1, 42, True])
    'WEB.42.true'
    >>> render_key(["user.", KeyField("id")], [""])
    Traceback (most recent call last):
    ...
    nats_micro_runtime._errors.InvalidArgumentError: [INVALID_ARGUMENT] key field id is missing (empty or unset)
    """
    fields = [segment for segment in segments if isinstance(segment, KeyField)]
    if len(fields) != len(values):
        raise ValueError(f"{len(fields)} placeholders but {len(values)} values")
    rendered: list[str] = []
    texts: list[tuple[KeyField, str]] = []
    fields_left = iter(values)
    for segment in segments:
        if isinstance(segment, str):
            rendered.append(segment)
            continue
        text = _render_value(segment, next(fields_left))
        if text is None:
            raise InvalidArgumentError(method, f"key field {segment.placeholder} is missing (empty or unset)").with_field_violation(
                segment.placeholder, "must be set and not empty: it is part of the key"
            )
        rendered.append(text)
        texts.append((segment, text))
    key = "".join(rendered)
    if not kv:
        return key
    for field, text in texts:
        if not _KEY_CHARS.fullmatch(text):
            bad = next(c for c in text if not _KEY_CHARS.fullmatch(c))
            raise InvalidArgumentError(method, f"key field {field.placeholder}: {bad!r} cannot be in a key").with_field_violation(
                field.placeholder, "may hold only A-Z a-z 0-9 - _ / = . (it is part of a key)"
            )
    if not is_valid_key(key):
        culprit = next(
            (f for f, text in texts if text.startswith(".") or text.endswith(".") or ".." in text),
            texts[0][0] if texts else None,
        )
        name = culprit.placeholder if culprit is not None else ""
        raise InvalidArgumentError(method, f"key field {name} gives a key with an empty token: {key!r}").with_field_violation(
            name, "gives a key with an empty token (a leading, trailing or double '.')"
        )
    return key


def is_valid_key(key: str) -> bool:
    """Whether ``key`` is a valid NATS key-value key: characters
    ``A-Z a-z 0-9 - _ / = .`` and no empty token.

    >>> is_valid_key("user.ada"), is_valid_key("user."), is_valid_key("a b")
    (True, False, False)
    """
    return bool(_KEY.fullmatch(key)) and "" not in key.split(".")


@dataclass(frozen=True)
class KeyTemplate:
    """A method's ``key_template`` as generated code declares it: the text,
    its segments, and ``values``, which extracts one value per placeholder
    from a request (``None`` for a missing one)."""

    text: str
    segments: tuple[KeySegment, ...]
    values: Callable[[Any], tuple[object, ...]]

    @property
    def fields(self) -> tuple[KeyField, ...]:
        """The placeholders, in order."""
        return tuple(segment for segment in self.segments if isinstance(segment, KeyField))

    def render(self, request: Any, *, kv: bool = True, method: str | None = None) -> str:
        """The key (or object name) of ``request``, as the server renders it."""
        return render_key(self.segments, self.values(request), kv=kv, method=method)

    def render_parts(self, parts: Mapping[str, object], *, kv: bool = True, method: str | None = None) -> str:
        """The key from values by placeholder (``{"tenant.id": 7}``); every placeholder is needed."""
        self._check_names(parts)
        return render_key(self.segments, [parts.get(f.placeholder) for f in self.fields], kv=kv, method=method)

    def filter(self, parts: Mapping[str, object], *, method: str | None = None) -> str:
        """A subject filter for the keys with the given ``parts``: each token
        holding a placeholder that is not given becomes ``*``.

        >>> t = KeyTemplate("{a}.n{b}.{c}", ("", KeyField("a"), ".n", KeyField("b"), ".", KeyField("c")), lambda r: ())
        >>> t.filter({"a": "x"}), t.filter({})
        ('x.*.*', '*.*.*')
        """
        self._check_names(parts)
        marker = "\x00"
        pieces: list[str] = []
        for segment in self.segments:
            if isinstance(segment, str):
                pieces.append(segment)
            elif segment.placeholder in parts:
                pieces.append(render_key([segment], [parts[segment.placeholder]], kv=True, method=method))
            else:
                pieces.append(marker)
        return ".".join("*" if marker in token else token for token in "".join(pieces).split("."))

    def matches(self, key: str, parts: Mapping[str, object]) -> bool:
        """Whether ``key`` has this template's shape with the given ``parts``
        (what :meth:`filter` cannot say within a token, e.g. ``n{number}``)."""
        pattern = []
        for segment in self.segments:
            if isinstance(segment, str):
                pattern.append(re.escape(segment))
            elif segment.placeholder in parts:
                pattern.append(re.escape(render_key([segment], [parts[segment.placeholder]], kv=True)))
            else:
                pattern.append(".+")
        return re.fullmatch("".join(pattern), key, re.DOTALL) is not None

    def _check_names(self, parts: Mapping[str, object]) -> None:
        unknown = sorted(set(parts) - {f.placeholder for f in self.fields})
        if unknown:
            raise ValueError(f"{self.text!r} has no placeholder {', '.join(unknown)}")
