"""The lab's catalogs (static/i18n-*.json): the same keys, forms and placeholders in every language, Korean in
the lecture's own terms and one consistent register. That the page shows nothing outside them is checked in
Chromium (tests/test_lab.py)."""

import json
import re

import pytest

from cnnlab.inference.serve.routers.pages import STATIC

LANGUAGES = ("en", "ko")
HANGUL = re.compile(r"[\uac00-\ud7a3]")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# Korean learners' terms for the lecture's ideas (issue 26): the page must use them, not loanword spellings of its own.
TERMS = ("합성곱", "커널", "필터", "스트라이드", "패딩", "풀링", "특성 맵", "완전 연결 계층", "과적합", "기울기 소실")
# Strings that are the same in every language: notation and names, no words to translate.
NOTATION = {"where.gradcam", "where.probability", "where.tip", "strip.tip", "foot.api"}
NOTATION |= {"number.digit", "number.digit.unsure"}  # a digit and its probability


def catalog(language: str) -> dict:
    return json.loads((STATIC / f"i18n-{language}.json").read_text(encoding="utf-8"))


def forms(value) -> dict:
    """A plain string, or its plural forms ({"one": ..., "other": ...})."""
    return value if isinstance(value, dict) else {"": value}


def test_every_key_in_every_language_with_the_same_forms_and_placeholders():
    english = catalog("en")
    for language in LANGUAGES[1:]:
        other = catalog(language)
        assert sorted(other) == sorted(english), set(other) ^ set(english)
        for key, value in english.items():
            assert forms(other[key]).keys() == forms(value).keys(), key
            for form, text in forms(value).items():
                assert set(PLACEHOLDER.findall(forms(other[key])[form])) == set(PLACEHOLDER.findall(text)), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_strings_are_plain_text(language):
    """Shown with textContent, never as HTML: a tag in a catalog would print as text."""
    for key, value in catalog(language).items():
        for text in forms(value).values():
            assert text.strip() and not re.search(r"<\w|&\w+;", text), key
            assert key in NOTATION or language != "en" or not HANGUL.search(text), key


def test_korean_is_korean_in_the_lectures_terms_and_one_register():
    korean = catalog("ko")
    untranslated = [
        k for k, v in korean.items() if k not in NOTATION and not HANGUL.search(json.dumps(v, ensure_ascii=False))
    ]
    assert untranslated == []
    text = " ".join(t for v in korean.values() for t in forms(v).values())
    assert [term for term in TERMS if term not in text] == []
    # 해요체 throughout: no sentence in the formal 합니다체, and no leftover machine phrasing of "the".
    assert not re.search(r"(습니다|합니다|됩니다)[.)]?(\s|$)", text)
    assert "그것" not in text and "당신" not in text


def page_files() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in STATIC.glob("*") if path.suffix in (".js", ".html")}


# Keys the page builds from a value: a stage's own name ("stage.global average pool") and where a digit came from.
BUILT = re.compile(r"^(stage|where\.source)\.")


def keys_in_the_page() -> set[str]:
    keys = set()
    for text in page_files().values():
        keys |= set(re.findall(r"""\bt\(\s*["']([\w.]+)["']""", text))  # t("key", ...)
        keys |= {
            k for pair in re.findall(r"""["']([a-z]+\.[\w.]+)["']\s*:\s*["']([a-z]+\.[\w.]+)["']""", text) for k in pair
        }
        keys |= set(re.findall(r"""t\(\s*\w+\s*\?\s*["']([\w.]+)["']""", text))
        keys |= set(re.findall(r"""data-i18n(?:-label|-alt|-title)?=["']([\w.]+)["']""", text))
        keys |= set(re.findall(r"""\[\s*["'][\w-]+["']\s*,\s*["']([a-z]+\.[\w.]+)["']""", text))  # [value, key] tables
    return keys


def test_every_key_the_page_uses_is_in_the_catalogs_and_every_key_is_used():
    english, used = catalog("en"), keys_in_the_page()
    assert sorted(used - set(english)) == []
    unused = sorted(k for k in set(english) - used if not BUILT.match(k))
    assert unused == []


def test_the_page_writes_no_words_of_its_own():
    """Text reaches the page through t() (or from the server's data); a literal with words in the page's code
    would show the same English in every language."""
    words = re.compile(r"[A-Za-z]{3,}")
    for name, text in page_files().items():
        if name.endswith(".js"):
            for literal in re.findall(r"""make\(\s*"[\w-]*"\s*,\s*"[^"]*"\s*,\s*"([^"]*)"\s*\)""", text):
                assert not words.search(literal), (name, literal)
            for literal in re.findall(r"""textContent\s*=\s*"([^"]*)\"""", text):
                assert not words.search(literal), (name, literal)


def test_the_html_says_in_english_what_the_catalog_says():
    """index.html's own text (seen before the catalog loads, and by the API tests) is the English catalog's."""
    english, html = catalog("en"), page_files()["index.html"]
    for key, text in re.findall(r"""data-i18n="([\w.]+)"[^>]*>([^<]*)<""", html):
        assert text.strip() == english[key].replace("&", "&amp;") or text.strip() == english[key], key
