"""Incremental parsing of an OData collection body, so a page is never held whole.

BC answers a list as ``{"@odata.context": "...", "value": [{...}, ...], "@odata.nextLink": "..."}``;
at 20,000 invoices with their lines a page is tens of MB of text and, parsed whole, close to a
GB of Python objects. :class:`CollectionParser` takes the body in chunks (as they arrive) and
hands out the elements of ``value`` one by one as soon as each is complete; the other top-level
members (the context, ``@odata.nextLink``, ``@odata.count``) are kept in :attr:`members`.

Each element is parsed by the C JSON scanner (``json.JSONDecoder.raw_decode``, numbers with a
fraction as :class:`~decimal.Decimal`, as :mod:`.bcjson` does), so the parser costs about what
``json.loads`` of the whole page costs; an element cut by a chunk boundary is simply tried again
when more text has arrived (at most one retried element per chunk). Memory: the unparsed rest
of the current chunk plus one element.
"""
from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"[-+0-9.eE]*")
_DECODER = json.JSONDecoder(parse_float=Decimal)
#: an element (or member value) larger than this is refused rather than buffered without bound
MAX_ELEMENT_CHARS = 256 * 1024 * 1024


class StreamFormatError(ValueError):
    """The body is not a JSON object whose ``value`` member is an array."""


# states
(_OPEN, _KEY_OR_END, _KEY, _COLON, _MEMBER, _ARRAY_OPEN, _ELEMENT_OR_END, _ELEMENT, _ELEMENT_SEP, _MEMBER_SEP,
 _DONE) = range(11)


class CollectionParser:
    """Feed text (:meth:`feed` / :meth:`feed_bytes`), collect elements, then :meth:`close`.

    :param array_member: the member whose array elements are streamed (``value``).
    """

    def __init__(self, array_member: str = "value") -> None:
        self.array_member = array_member
        self.members: dict[str, Any] = {}
        self._buf = ""
        self._pos = 0
        self._state = _OPEN
        self._key: str | None = None
        self._seen_array = False
        self._bytes = codecs.getincrementaldecoder("utf-8")()

    # ------------------------------------------------------------------ input
    def feed_bytes(self, data: bytes, *, final: bool = False) -> list[Any]:
        return self.feed(self._bytes.decode(data, final), final=final)

    def feed(self, text: str, *, final: bool = False) -> list[Any]:
        """Add ``text``; return the elements of the array completed by it (in order)."""
        if self._pos:
            self._buf = self._buf[self._pos:] + text
            self._pos = 0
        else:
            self._buf += text
        out: list[Any] = []
        self._run(out, final)
        if len(self._buf) - self._pos > MAX_ELEMENT_CHARS:
            raise StreamFormatError(f"an element of the collection is larger than {MAX_ELEMENT_CHARS} characters")
        return out

    def close(self) -> list[Any]:
        """The body ended: return the last elements; raise if the document is incomplete."""
        out = self.feed_bytes(b"", final=True)
        if self._state != _DONE:
            raise StreamFormatError("the collection body ended before the JSON document did")
        if not self._seen_array:
            raise StreamFormatError(f"the body has no '{self.array_member}' array")
        return out

    # ------------------------------------------------------------------ the machine
    def _value(self, final: bool) -> tuple[Any, bool]:
        """Decode one JSON value at the current position: (value, True), or (None, False) when
        more text is needed."""
        buf, pos = self._buf, self._pos
        if buf[pos] in "-0123456789" and not final and _NUMBER.match(buf, pos).end() == len(buf):
            return None, False  # a number at the end of the text may go on in the next chunk
        try:
            value, end = _DECODER.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            if final:
                raise StreamFormatError(f"invalid JSON in the collection body: {exc.msg} at {exc.pos}") from None
            return None, False
        self._pos = end
        return value, True

    def _run(self, out: list[Any], final: bool) -> None:
        buf = self._buf
        n = len(buf)
        while True:
            pos = _WS.match(buf, self._pos).end()
            self._pos = pos
            if pos >= n:
                return
            ch = buf[pos]
            state = self._state
            if state == _ELEMENT:
                value, ok = self._value(final)
                if not ok:
                    return
                out.append(value)
                self._state = _ELEMENT_SEP
            elif state == _ELEMENT_SEP:
                self._pos = pos + 1
                if ch == ",":
                    self._state = _ELEMENT
                elif ch == "]":
                    self._state = _MEMBER_SEP
                else:
                    raise StreamFormatError(f"expected ',' or ']' in the '{self.array_member}' array, found {ch!r}")
            elif state == _ARRAY_OPEN:
                if ch != "[":
                    raise StreamFormatError(f"'{self.array_member}' is not an array")
                self._seen_array = True
                self._pos = pos + 1
                self._state = _ELEMENT_OR_END
            elif state == _ELEMENT_OR_END:
                if ch == "]":
                    self._pos = pos + 1
                    self._state = _MEMBER_SEP
                else:
                    self._state = _ELEMENT
            elif state == _OPEN:
                if ch != "{":
                    raise StreamFormatError("the collection body is not a JSON object")
                self._pos = pos + 1
                self._state = _KEY_OR_END
            elif state == _KEY_OR_END:
                if ch == "}":
                    self._pos = pos + 1
                    self._state = _DONE
                else:
                    self._state = _KEY
            elif state == _KEY:
                if ch != '"':
                    raise StreamFormatError(f"expected a member name, found {ch!r}")
                key, ok = self._value(final)
                if not ok:
                    return
                self._key = key
                self._state = _COLON
            elif state == _COLON:
                if ch != ":":
                    raise StreamFormatError(f"expected ':' after {self._key!r}, found {ch!r}")
                self._pos = pos + 1
                self._state = _ARRAY_OPEN if self._key == self.array_member else _MEMBER
            elif state == _MEMBER:
                value, ok = self._value(final)
                if not ok:
                    return
                assert self._key is not None
                self.members[self._key] = value
                self._state = _MEMBER_SEP
            elif state == _MEMBER_SEP:
                self._pos = pos + 1
                if ch == ",":
                    self._state = _KEY
                elif ch == "}":
                    self._state = _DONE
                else:
                    raise StreamFormatError(f"expected ',' or '}}' between members, found {ch!r}")
            else:  # _DONE
                raise StreamFormatError(f"text after the end of the collection body: {ch!r}")


def iter_elements(chunks: Iterable[bytes], members: dict[str, Any] | None = None,
                  array_member: str = "value") -> Iterator[Any]:
    """The elements of ``array_member`` from a body arriving in ``chunks``; the other members
    end up in ``members`` (complete once the iterator is exhausted)."""
    parser = CollectionParser(array_member)
    if members is not None:
        parser.members = members
    for chunk in chunks:
        yield from parser.feed_bytes(chunk)
    yield from parser.close()


__all__ = ["CollectionParser", "StreamFormatError", "iter_elements"]
