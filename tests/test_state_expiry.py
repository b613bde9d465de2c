"""CRM_STATE_EXPIRY_SECONDS (rxconfig.py): how long a tab's state stays in the web worker after its last
event. Bad values stop the start with a message naming the variable, rather than keeping every tab
for Reflex's hour or evicting tabs in use."""

import pytest

import rxconfig


def test_default_is_half_an_hour(monkeypatch):
    monkeypatch.delenv("CRM_STATE_EXPIRY_SECONDS", raising=False)
    assert rxconfig._state_expiry_seconds() == 1800


def test_a_set_value_is_used(monkeypatch):
    monkeypatch.setenv("CRM_STATE_EXPIRY_SECONDS", " 600 ")
    assert rxconfig._state_expiry_seconds() == 600


@pytest.mark.parametrize("raw", ["abc", "59", "-5", "1.5"])
def test_bad_values_stop_with_the_variable_named(monkeypatch, raw):
    monkeypatch.setenv("CRM_STATE_EXPIRY_SECONDS", raw)
    with pytest.raises(SystemExit, match="CRM_STATE_EXPIRY_SECONDS"):
        rxconfig._state_expiry_seconds()
