"""Markdown conversion, splitting and title shortening (no services needed)."""
import pytest

from connectors.markup import ELLIPSIS, plain_text, parse, shorten, split_text, to_whatsapp, unique_titles


@pytest.mark.parametrize(
    "source, expected",
    [
        ("**bold**", "*bold*"),
        ("__bold__", "*bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~strike~~", "~strike~"),
        ("```\nprint('x')\n```", "```\nprint('x')\n```"),
        ("```python\nx = a*b*c\n```", "```x = a*b*c\n```"),
        ("use `pip install`", "use `pip install`"),
        ("[our FAQ](https://example.com/faq)", "our FAQ (https://example.com/faq)"),
        ("[https://x.io](https://x.io)", "https://x.io"),
        ("**Order _4471_** shipped", "*Order _4471_* shipped"),
        ("# Your order\n* item one\n- item two", "*Your order*\n• item one\n• item two"),
        ("snake_case_name stays", "snake_case_name stays"),
        ("2*3*4 = 24", "2*3*4 = 24"),
        ("a ** b ** c", "a ** b ** c"),
        ("price: $5 * 2", "price: $5 * 2"),
        ("", ""),
    ],
)
def test_markdown_to_whatsapp(source, expected):
    assert to_whatsapp(source) == expected


def test_plain_text_drops_markup():
    assert plain_text(parse("**Hi** _there_, see [docs](https://d.io) `x`")) == "Hi there, see docs (https://d.io) x"


def test_split_prefers_paragraphs_then_sentences_then_words():
    paragraphs = ["a" * 30, "b" * 30, "c" * 30]
    assert split_text("\n\n".join(paragraphs), 64) == ["a" * 30 + "\n\n" + "b" * 30, "c" * 30]
    sentences = "First sentence here. Second sentence here. Third one."
    assert split_text(sentences, 25) == ["First sentence here.", "Second sentence here.", "Third one."]
    words = "alpha beta gamma delta epsilon"
    assert split_text(words, 12) == ["alpha beta", "gamma delta", "epsilon"]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize("limit", [20, 100, 4096])
def test_split_never_exceeds_the_limit_and_loses_no_words(limit):
    text = "\n\n".join(
        " ".join(f"word{i}-{j}." if j % 7 == 0 else f"word{i}-{j}" for j in range(300)) for i in range(6)
    )
    chunks = split_text(text, limit)
    assert all(0 < len(chunk) <= limit for chunk in chunks)
    assert " ".join(chunks).split() == text.split()


def test_split_of_short_or_empty_text():
    assert split_text("  hello  ", 10) == ["hello"]
    assert split_text("", 10) == [] and split_text(None, 10) == []


@pytest.mark.parametrize(
    "title, limit, expected",
    [
        ("Track order", 20, "Track order"),
        ("Track my order please now", 20, "Track my order" + ELLIPSIS),
        ("Supercalifragilisticexpialidocious", 20, "Supercalifragilisti" + ELLIPSIS),
        ("Yes, cancel it, please", 20, "Yes, cancel it" + ELLIPSIS),
        ("  many   spaces   here  ", 20, "many spaces here"),
    ],
)
def test_shorten_at_word_boundary_with_ellipsis(title, limit, expected):
    result = shorten(title, limit)
    assert result == expected and len(result) <= limit


def test_unique_titles_disambiguate_collisions_within_the_limit():
    titles = ["Reschedule my appointment", "Reschedule my appointment later", "Cancel", "Cancel"]
    result = unique_titles(titles, 20)
    assert len(set(t.casefold() for t in result)) == 4
    assert all(len(t) <= 20 for t in result)
    assert result[2] == "Cancel" and result[3] == "Cancel (2)"
    assert result[0].endswith(ELLIPSIS)
