"""The tone of a text a prospect wrote (or a rep noted): -1 (negative) to +1 (positive).

The one module that knows which library scores sentiment: VADER (`vaderSentiment`, MIT), a
lexicon-and-rules model whose lexicon ships inside the wheel, so nothing is downloaded at run time
and scoring a short email takes ~15 microseconds. The rest of the app calls `sentiment_of` and
`tone_of` only, so the library can be swapped without touching anything else.

VADER's lexicon is general-purpose; it reads "We've decided to go with another vendor. Thanks for
your time." as positive (+0.44: "thanks"). Sales has its own ways of saying no, so a short list of
sales phrases (`SALES_PHRASES`) is scored on VADER's own -4..+4 scale before VADER weighs the rest:
each phrase becomes one token in the lexicon, so VADER's negation, "but" and intensity rules still
apply around it. Automatic replies carry no sentiment at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# VADER's own cut-offs for its compound score (its README): at or beyond +-0.05 is a tone.
POSITIVE_FROM = 0.05
NEGATIVE_FROM = -0.05

# Sales phrases VADER's lexicon misses, with a valence on its -4..+4 scale.
SALES_PHRASES: dict[str, float] = {
    r"(?:go|going|gone|went)\s+with\s+(?:another|a different|an other)\s+(?:vendor|provider|supplier|solution)": -3.0,
    r"(?:another|a different)\s+(?:vendor|provider|supplier)": -2.0,
    r"(?:decided|chosen|chose)\s+(?:not\s+to|against)": -2.5,
    r"budget\s+(?:is\s+|was\s+|has\s+been\s+)?(?:frozen|cut|gone|spent)": -2.5,
    r"(?:too|very)\s+(?:expensive|pricey|high|steep)": -2.0,
    r"(?:can(?:no|')t|cannot|could\s*n[o']t)\s+justify": -2.0,
    r"(?:is\s*n[o']t|is\s+not|not)\s+(?:a|our)\s+priority": -2.0,
    r"(?:take|remove)\s+(?:me|us)\s+off": -2.5,
    r"unsubscribe": -2.0,
    r"(?:cheaper|other)\s+competitor|competitor": -1.5,
    r"no\s+(?:reply|response|answer)": -1.5,
    r"(?:on\s+hold|put\s+on\s+ice|pushed\s+back)": -1.5,
    r"(?:do\s*n[o']t|please\s+don't)\s+follow\s+up": -1.5,
    r"send\s+(?:over\s+)?the\s+contract|(?:ready|want|like)\s+to\s+sign": 2.5,
    r"decision\s+expected": 1.0,
    r"pushing\s+internally|champion": 1.5,
}
_AUTO_REPLY = re.compile(r"\b(?:out of (?:the )?office|automatic reply|auto-?reply|on (?:annual )?leave until)\b",
                         re.IGNORECASE)


@lru_cache(maxsize=1)
def _analyzer() -> tuple[SentimentIntensityAnalyzer, list[tuple[re.Pattern[str], str]]]:
    analyzer = SentimentIntensityAnalyzer()
    phrases = []
    for number, (pattern, valence) in enumerate(SALES_PHRASES.items()):
        token = f"salesphrase{number}"  # letters only: VADER keeps it as one word
        analyzer.lexicon[token] = valence
        phrases.append((re.compile(rf"\b{pattern}\b", re.IGNORECASE), token))
    return analyzer, phrases


def sentiment_of(text: str | None, names: Iterable[str] = ()) -> float:
    """The text's tone from -1 (very negative) to +1 (very positive); 0 for no text or an
    automatic reply. Rounded to 3 decimals (it is stored).

    `names` (the lead's and company's names) are left out: VADER's lexicon has words that are also
    first names ("Grace" +1.8, "Joy", "Hope"), and "Grace says they chose a competitor" is not
    positive."""
    if not text or not text.strip() or _AUTO_REPLY.search(text):
        return 0.0
    words = {w for name in names if name for w in _NAME_WORD.findall(name)}
    if words:
        text = without_names(text, words)
    return _tone_score(text)


_NAME_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")


@lru_cache(maxsize=65_536)
def _tone_score(text: str) -> float:
    # Cached: replies and notes are written from a few templates, so the same text (names left out)
    # comes back again and again; the demo data scores millions of them.
    analyzer, phrases = _analyzer()
    for pattern, token in phrases:
        text = pattern.sub(f" {token} ", text)
    return round(analyzer.polarity_scores(text)["compound"], 3)


def without_names(text: str, words: Iterable[str]) -> str:
    """`text` with each of `words` standing as a whole word (any case) replaced by a space: exactly
    what `re.sub(r"\\b(?:w1|w2|...)\\b", " ", text, flags=re.IGNORECASE)` with the words sorted
    gives, without compiling a pattern per set of names (a compile costs ~0.5 ms, and every lead
    has its own names). Text or words outside ASCII take the regular-expression path."""
    alternatives = sorted(set(words))
    if not alternatives:
        return text
    if not (text.isascii() and all(word.isascii() for word in alternatives)):
        pattern = r"\b(?:" + "|".join(map(re.escape, alternatives)) + r")\b"
        return re.sub(pattern, " ", text, flags=re.IGNORECASE)
    lower = text.lower()
    lowered = [word.lower() for word in alternatives]
    # Only where some word starts can the pattern match; tried left to right as the regex scans.
    starts = set()
    for word in set(lowered):
        at = lower.find(word)
        while at != -1:
            starts.add(at)
            at = lower.find(word, at + 1)
    if not starts:
        return text
    pieces, done = [], 0
    for at in sorted(starts):
        if at < done or not _at_boundary(text, at):
            continue  # inside an earlier match, or not at the start of a word
        for word in lowered:  # the first alternative that matches wins, as in the regex
            end = at + len(word)
            if lower.startswith(word, at) and _at_boundary(text, end):
                pieces += (text[done:at], " ")
                done = end
                break
    pieces.append(text[done:])
    return "".join(pieces)


def _at_boundary(text: str, at: int) -> bool:
    """Whether `\\b` holds at this position (a word character on exactly one side)."""
    before = at > 0 and (text[at - 1].isalnum() or text[at - 1] == "_")
    after = at < len(text) and (text[at].isalnum() or text[at] == "_")
    return before != after


def tone_of(sentiment: float | None) -> str:
    """"positive", "neutral" or "negative"; "" when there is no sentiment (no text)."""
    if sentiment is None:
        return ""
    if sentiment >= POSITIVE_FROM:
        return "positive"
    if sentiment <= NEGATIVE_FROM:
        return "negative"
    return "neutral"
