"""The API's JSON parser: DRF's, with a bound on how deeply a body may nest.

Python's JSON decoder recurses once per level, so a body of a few thousand ``[`` makes it
raise RecursionError, which DRF does not catch: the client got a server error, and the
traceback a log entry. No request of this API nests more than three levels, so the body's
depth is measured first, without recursion, and a deeper one is answered 400 before it is
decoded.
"""

import json
import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils.json import strict_constant

MAX_JSON_DEPTH = 32

# A JSON string (skipped: brackets inside it do not nest) or one bracket.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def too_deep() -> ParseError:
    return ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")


def check_depth(text: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise ParseError when ``text`` opens more than ``limit`` arrays or objects inside
    one another. A malformed text is left for the decoder to describe."""
    depth = 0
    for token in _STRING_OR_BRACKET.finditer(text):
        char = token.group()
        if char in ("[", "{"):
            depth += 1
            if depth > limit:
                raise too_deep()
        elif char in ("]", "}"):
            depth -= 1


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the depth bound; the same errors otherwise."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding)
            check_depth(text)
            return json.loads(text, parse_constant=strict_constant if self.strict else None)
        except RecursionError:  # the decoder's own limit, should the check ever miss
            raise too_deep() from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
