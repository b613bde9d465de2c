"""Sentiment of known texts: what a rep would call positive, neutral or negative."""

from __future__ import annotations

import socket

import pytest

from crm_app.scoring.sentiment import sentiment_of, tone_of

POSITIVE = [
    "Thanks, this looks great, can we talk pricing?",
    "Great call today. The team is excited; can you send over the contract?",
    "Yes, perfect timing, we were just looking for something like this. Does Thursday work?",
    "Strong fit. They want to roll out to the whole team after a pilot.",
    "I love it, great product!",
]
NEUTRAL = [
    "Can you send a one-pager? We're reviewing options next month.",
    "Left a voicemail for Ada. Will try again Thursday.",
    "Acme runs on spreadsheets today; two people involved in the decision.",
    # An automatic reply says nothing about the deal, whatever its words.
    "I'm out of the office until Monday with limited access to email.",
    "",
]
NEGATIVE = [
    "This is terrible and a waste of money.",
    # Sales ways of saying no that a general-purpose lexicon reads as polite or positive.
    "We've decided to go with another vendor. Thanks for your time.",
    "Budget frozen until next year, unfortunately. Please don't follow up before then.",
    "This isn't a priority for us right now. Please take me off your list.",
    "Honestly the price is too high for us. We can't justify it this year.",
    "Procurement stalled; no reply to the last three emails.",
    "Ada says they are evaluating a cheaper competitor.",
]


@pytest.mark.parametrize("text", POSITIVE)
def test_positive_texts(text):
    assert tone_of(sentiment_of(text)) == "positive"


@pytest.mark.parametrize("text", NEUTRAL)
def test_neutral_texts(text):
    assert tone_of(sentiment_of(text)) == "neutral"


@pytest.mark.parametrize("text", NEGATIVE)
def test_negative_texts(text):
    assert tone_of(sentiment_of(text)) == "negative"


def test_the_leads_own_name_carries_no_sentiment():
    text = "Grace says they are evaluating a cheaper competitor."
    assert tone_of(sentiment_of(text)) == "positive"  # "grace" is a positive word to VADER
    assert tone_of(sentiment_of(text, names=["Grace Hopper", "Compilers Inc"])) == "negative"


def test_negation_still_applies_around_a_sales_phrase():
    assert tone_of(sentiment_of("We are not going with another vendor, we chose you.")) == "positive"


def test_scores_stay_within_minus_one_and_one_and_no_text_has_no_tone():
    for text in POSITIVE + NEUTRAL + NEGATIVE:
        assert -1 <= sentiment_of(text) <= 1
    assert tone_of(None) == ""


def test_scoring_needs_no_network(monkeypatch):
    """The lexicon is inside the wheel: scoring works with every socket refused."""
    import crm_app.scoring.sentiment as module

    module._analyzer.cache_clear()

    def refuse(*args, **kwargs):
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert tone_of(sentiment_of("Budget frozen, unfortunately.")) == "negative"
