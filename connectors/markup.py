"""Markdown helpers shared by the output channels.

The assistant's responses are written in Markdown (CommonMark, read by
markdown-it-py): ``**bold**``, ``*italic*`` / ``_italic_``, ``~~strike~~``,
``inline code``, fenced code blocks, ``[links](https://...)``, ``# headings``
and lists. ``parse`` turns that into a few spans; each platform renders the spans
its own way (WhatsApp's ``*bold*`` / ``_italic_`` / ``~strike~``, Telegram's
MarkdownV2 with everything else escaped). Splitting and title shortening for
platform limits live here too.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

from markdown_it import MarkdownIt

ELLIPSIS = "\u2026"

# --------------------------------------------------------------------------- spans


@dataclass
class Span:
    """A piece of formatted text: ``kind`` is text, bold, italic, strike, code, pre or link."""

    kind: str
    text: str = ""
    children: List["Span"] = field(default_factory=list)
    url: str = ""
    lang: str = ""


_MD = MarkdownIt("commonmark", {"html": False}).enable("strikethrough")
# Anything CommonMark could read as markup; text without it is not parsed at all.
_MARKDOWN_HINT = re.compile(r"[*_~`\[\]#\\]|^[ \t]*(?:>|[-+]|\d+[.)])[ \t]", re.MULTILINE)
_MARKS = {"strong": "bold", "em": "italic", "s": "strike"}


def parse(markdown: str) -> List[Span]:
    """Parse the assistant's Markdown into spans, with markdown-it-py (CommonMark).

    Headings become bold lines and list items bullet lines ("• ", or their
    number); blocks are separated as in the source (a line break, or a blank
    line). Raw HTML stays text, and asterisks inside a word ("2*3*4") are not
    emphasis.
    """
    if not _MARKDOWN_HINT.search(markdown or ""):
        return [Span("text", markdown)] if markdown else []  # plain text stays exactly as written
    spans: List[Span] = []
    previous_end: Optional[int] = None
    depth, numbers = 0, []
    prefix = ""
    heading = False
    for token in _MD.parse(markdown or ""):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            depth += 1
            numbers.append(kind == "ordered_list_open")
        elif kind in ("bullet_list_close", "ordered_list_close"):
            depth -= 1
            numbers.pop()
        elif kind == "list_item_open":
            marker = f"{token.info}{token.markup} " if numbers and numbers[-1] else "\u2022 "
            prefix = "  " * (depth - 1) + marker
        elif kind == "heading_open":
            heading = True
        elif kind == "heading_close":
            heading = False
        elif kind in ("inline", "fence", "code_block") and token.map:
            start, end = token.map
            if previous_end is not None:
                spans.append(Span("text", "\n" * min(2, max(1, start - previous_end + 1))))
            previous_end = end
            if prefix:
                spans.append(Span("text", prefix))
                prefix = ""
            if kind == "inline":
                inline = _inline(token.children or [])
                spans.extend([Span("bold", children=inline)] if heading else inline)
            else:
                lang = (token.info or "").strip()
                # Without a language the code starts on its own line, as it was written.
                spans.append(Span("pre", ("" if lang else "\n") + token.content, lang=lang))
    return spans


def _inline(tokens: Sequence[Any]) -> List[Span]:
    """Spans of one inline token's children."""
    root: List[Span] = []
    stack: List[tuple] = [("root", root, None)]
    for token in tokens:
        current = stack[-1][1]
        kind = token.type
        if kind == "text":
            current.append(Span("text", token.content))
        elif kind in ("softbreak", "hardbreak"):
            current.append(Span("text", "\n"))
        elif kind == "code_inline":
            current.append(Span("code", token.content))
        elif kind == "image":
            current.append(Span("text", token.content or ""))
        elif kind.endswith("_open") and (kind[:-5] in _MARKS or kind == "link_open"):
            name = kind[:-5]
            span = Span("link", url=token.attrs.get("href", "")) if name == "link" else Span(_MARKS[name])
            literal = name == "em" and token.markup == "*" and _ends_alnum(current)
            stack.append((name, span.children, (span, literal, token.markup)))
        elif kind.endswith("_close") and len(stack) > 1:
            _, children, (span, literal, markup) = stack.pop()
            parent = stack[-1][1]
            if literal:  # "2*3*4": asterisks inside a word are arithmetic, not emphasis
                parent.append(Span("text", markup))
                parent.extend(children)
                parent.append(Span("text", markup))
            else:
                span.children = children
                parent.append(span)
        else:
            current.append(Span("text", token.content or ""))
    return _merge_text(root)


def _ends_alnum(spans: List[Span]) -> bool:
    return bool(spans) and spans[-1].kind == "text" and spans[-1].text[-1:].isalnum()


def _merge_text(spans: List[Span]) -> List[Span]:
    merged: List[Span] = []
    for span in spans:
        if span.kind == "text" and merged and merged[-1].kind == "text":
            merged[-1] = Span("text", merged[-1].text + span.text)
        else:
            merged.append(span)
    return merged


def plain_text(spans: Sequence[Span]) -> str:
    """The visible text of ``spans``, without any markup."""
    out = []
    for span in spans:
        if span.kind in ("text", "code", "pre"):
            out.append(span.text)
        elif span.kind == "link":
            inner = plain_text(span.children)
            out.append(inner if inner == span.url else f"{inner} ({span.url})")
        else:
            out.append(plain_text(span.children))
    return "".join(out)


# ----------------------------------------------------------------------- WhatsApp


def to_whatsapp(markdown: str) -> str:
    """Markdown to WhatsApp formatting: *bold*, _italic_, ~strike~, ```code```."""
    return _render_whatsapp(parse(markdown))


def _render_whatsapp(spans: Sequence[Span]) -> str:
    marks = {"bold": "*", "italic": "_", "strike": "~"}
    out = []
    for span in spans:
        if span.kind == "text":
            out.append(span.text)
        elif span.kind == "code":
            out.append(f"`{span.text}`")
        elif span.kind == "pre":
            out.append(f"```{span.text}```")
        elif span.kind == "link":
            label = plain_text(span.children)
            out.append(span.url if label == span.url else f"{label} ({span.url})")
        else:
            mark = marks[span.kind]
            out.append(f"{mark}{_render_whatsapp(span.children)}{mark}")
    return "".join(out)


# ----------------------------------------------------------------------- Telegram

# Telegram Bot API, "MarkdownV2 style": outside entities these must be escaped;
# so must the backslash itself, or "\x" would be read as an escaped "x".
_V2_SPECIAL = set("_*[]()~`>#+-=|{}.!\\")
_V2_CODE_SPECIAL = set("`\\")
_V2_URL_SPECIAL = set(")\\")


def _escape_with(text: str, special: set) -> str:
    return "".join("\\" + char if char in special else char for char in text)


def escape_markdown_v2(text: str, entity: Optional[str] = None) -> str:
    """Escape ``text`` for Telegram MarkdownV2.

    ``entity`` is None for ordinary text, ``"code"``/``"pre"`` inside code, or
    ``"url"`` for the URL part of an inline link; each has its own rule.
    """
    if entity in ("code", "pre"):
        return _escape_with(text, _V2_CODE_SPECIAL)
    if entity in ("url", "text_link"):
        return _escape_with(text, _V2_URL_SPECIAL)
    return _escape_with(text, _V2_SPECIAL)


def to_telegram_v2(markdown: str) -> str:
    """Markdown to Telegram MarkdownV2: entities kept, every other special char escaped."""
    return _render_v2(parse(markdown))


def _render_v2(spans: Sequence[Span]) -> str:
    marks = {"bold": "*", "italic": "_", "strike": "~"}
    out: List[str] = []
    for span in spans:
        if span.kind == "text":
            piece = escape_markdown_v2(span.text)
        elif span.kind == "code":
            piece = f"`{escape_markdown_v2(span.text, 'code')}`"
        elif span.kind == "pre":
            # The line after ``` names the language in Telegram, so the code
            # always starts on the next line.
            body = span.text[1:] if span.text.startswith("\n") else span.text
            piece = f"```{span.lang}\n{escape_markdown_v2(body, 'pre')}```"
        elif span.kind == "link":
            piece = f"[{_render_v2(span.children)}]({escape_markdown_v2(span.url, 'url')})"
        else:
            mark = marks[span.kind]
            piece = f"{mark}{_render_v2(span.children)}{mark}"
        if out and out[-1].endswith("_") and piece.startswith("_") and not out[-1].endswith("\\_"):
            # Two italics back to back would read as "__" (underline); Telegram
            # ignores a "\r" placed between them.
            out.append("\r")
        out.append(piece)
    return "".join(out)


# ---------------------------------------------------------------------- splitting

_SEPARATORS = (
    re.compile(r"\n\s*\n"),          # paragraphs
    re.compile(r"\n"),               # lines
    re.compile(r"(?<=[.!?…])\s+"),   # sentences
    re.compile(r"\s+"),              # words
)


def split_text(text: str, limit: int, length: Callable[[str], int] = len) -> List[str]:
    """Split ``text`` into chunks of at most ``limit`` (by ``length``).

    Prefers paragraph, then line, then sentence, then word boundaries; only a
    single word longer than the limit is cut mid-word.
    """
    text = (text or "").strip()
    if not text:
        return []
    if length(text) <= limit:
        return [text]
    return [chunk for chunk in _split(text, limit, 0, length) if chunk]


def _split(text: str, limit: int, level: int, length: Callable[[str], int]) -> List[str]:
    if length(text) <= limit:
        return [text]
    if level >= len(_SEPARATORS):
        return _hard_cut(text, limit, length)
    parts = _pieces(text, _SEPARATORS[level])
    if len(parts) == 1:
        return _split(text, limit, level + 1, length)
    chunks: List[str] = []
    current = ""
    for separator, part in parts:
        candidate = current + separator + part if current else part
        if length(candidate) <= limit:
            current = candidate
            continue
        if current:
            chunks.append(current.strip())
        if length(part) <= limit:
            current = part
        else:
            pieces = _split(part, limit, level + 1, length)
            chunks.extend(p.strip() for p in pieces[:-1])
            current = pieces[-1]
    if current.strip():
        chunks.append(current.strip())
    return chunks


def _pieces(text: str, separator: "re.Pattern") -> List[tuple]:
    """(separator before, piece) pairs, keeping the original separators."""
    out = []
    position = 0
    before = ""
    for match in separator.finditer(text):
        out.append((before, text[position:match.start()]))
        before = match.group(0)
        position = match.end()
    out.append((before, text[position:]))
    return [(sep, piece) for sep, piece in out if piece]


def _hard_cut(text: str, limit: int, length: Callable[[str], int]) -> List[str]:
    chunks = []
    while text:
        size = min(len(text), limit)
        while size > 1 and length(text[:size]) > limit:
            size -= 1
        chunks.append(text[:size])
        text = text[size:]
    return chunks


# ---------------------------------------------------------------------- shortening


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word boundary, with an ellipsis."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    room = limit - 1
    cut = text[: room + 1]
    boundary = cut.rfind(" ")
    head = cut[:boundary] if boundary > 0 else text[:room]
    head = head.rstrip(" ,.;:-–—!?")
    if not head:
        head = text[:room]
    return head[:room] + ELLIPSIS


def unique_titles(titles: Sequence[str], limit: int) -> List[str]:
    """Shorten every title to ``limit`` and make them pairwise distinct.

    A title that collides with an earlier one after shortening (or was equal to
    begin with) gets a numbered suffix, " (2)", " (3)", and is shortened so the
    suffix still fits.
    """
    used = set()
    result = []
    for original in titles:
        candidate = shorten(original, limit)
        number = 2
        while candidate.casefold() in used:
            suffix = f" ({number})"
            candidate = shorten(original, max(1, limit - len(suffix))) + suffix
            number += 1
        used.add(candidate.casefold())
        result.append(candidate)
    return result
