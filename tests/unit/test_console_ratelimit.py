"""Login rate limiting (console.ratelimit): 5 failures for a name or from an address within 5 minutes
lock that name or address for the rest of the window; a success takes its attempt back."""

from __future__ import annotations

import pytest

from console.pages.login import locked_message
from console.ratelimit import LoginLimiter, login_keys


def fail(limiter: LoginLimiter, keys: tuple[str, str], now: float) -> float:
    return limiter.begin(keys, now)  # begun and never taken back: a failure


def test_five_failures_for_a_name_lock_it_from_every_address_for_the_rest_of_the_window() -> None:
    limiter = LoginLimiter()
    for i in range(5):
        assert fail(limiter, login_keys("ada", f"10.0.0.{i}"), 100.0 + i) == 0.0
    assert limiter.begin(login_keys("ada", "10.0.0.9"), 110.0) == pytest.approx(290.0)  # until 100 + 300
    assert limiter.begin(login_keys("bob", "10.0.0.9"), 110.0) == 0.0  # another name, another address
    assert limiter.begin(login_keys("ada", "10.0.0.8"), 399.0) == pytest.approx(1.0)  # refusals count nothing
    assert limiter.begin(login_keys("ada", "10.0.0.8"), 400.0) == 0.0  # the first failure has aged out
    assert limiter.begin(login_keys("ada", "10.0.0.8"), 400.5) == pytest.approx(0.5)  # five again: locked


def test_five_failures_from_an_address_lock_it_for_every_name() -> None:
    limiter = LoginLimiter()
    for i in range(5):
        fail(limiter, login_keys(f"user{i}", "192.0.2.1"), float(i))
    assert limiter.begin(login_keys("mia", "192.0.2.1"), 10.0) == pytest.approx(290.0)
    assert limiter.begin(login_keys("mia", "192.0.2.2"), 10.0) == 0.0


def test_a_success_takes_its_attempt_back_and_clears_the_name() -> None:
    limiter = LoginLimiter()
    keys = login_keys("ada", "192.0.2.1")
    for i in range(4):
        fail(limiter, keys, float(i))
    assert limiter.begin(keys, 5.0) == 0.0  # the 5th attempt, in flight, already counts ...
    assert limiter.retry_after(keys, 5.0) > 0  # ... so a parallel one would be refused
    limiter.take_back(keys, 5.0)
    limiter.forget(keys[0])
    assert limiter.retry_after(keys, 5.0) == 0.0
    for i in range(5):  # the address keeps its 4 failures: one more from anyone locks it
        assert limiter.retry_after(login_keys(f"x{i}", "192.0.2.1"), 6.0) == 0.0
    fail(limiter, login_keys("eve", "192.0.2.1"), 6.0)
    assert limiter.retry_after(login_keys("ada", "192.0.2.1"), 7.0) > 0


def test_keys_are_bounded_and_the_message_says_when() -> None:
    limiter = LoginLimiter(max_keys=10)
    for i in range(100):
        fail(limiter, login_keys(f"n{i}" + "x" * 200, "a"), float(i))
    assert len(limiter._failures) <= 10
    assert locked_message(290.0) == ("Too many failed logins for this user name or from this address: "
                                      "try again in 5 minutes.")
    assert locked_message(3.0).endswith("in 1 minute.")
