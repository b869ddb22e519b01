"""A plain ``pytest`` says, in its last line before the counts, how many tests waited
for a database server and the command that runs them."""

from __future__ import annotations

from conftest import SERVER_TESTS


def test_the_skipped_server_tests_are_summed_up_in_one_line(pytester, monkeypatch):
    for variable in SERVER_TESTS:
        monkeypatch.delenv(variable, raising=False)
    pytester.syspathinsert()
    pytester.makepyfile(summary_plugin="from conftest import pytest_terminal_summary")
    pytester.makepyfile(
        test_servers="""
        import os

        import pytest


        @pytest.mark.parametrize("kind", ["POSTGRES", "MYSQL", "REDIS", "POSTGRES2"])
        def test_on_a_server(kind):
            variable = f"ENTITLEMENTS_TEST_{kind.rstrip('2')}_URL"
            if not os.environ.get(variable):
                pytest.skip(f"{variable} is not set: the tests need a server")

        def test_without_an_extra():
            pytest.skip("needs an optional extra")

        def test_here():
            assert True
        """
    )
    result = pytester.runpytest("-p", "summary_plugin", "-rfEX")
    result.assert_outcomes(passed=1, skipped=5)
    lines = [line for line in result.outlines if "server tests skipped" in line]
    assert len(lines) == 1
    (line,) = lines
    assert line.startswith("4 server tests skipped (PostgreSQL 2, MariaDB 1, Redis 1): ")
    assert "ENTITLEMENTS_TEST_POSTGRES_URL=postgresql+psycopg://" in line
    assert "ENTITLEMENTS_TEST_REDIS_URL=redis://" in line
    assert "pytest`" in line
    assert result.outlines.index(line) >= len(result.outlines) - 3
    assert not any(line.startswith("SKIPPED") for line in result.outlines)


def test_nothing_is_said_when_every_server_test_ran(pytester):
    pytester.syspathinsert()
    pytester.makepyfile(summary_plugin="from conftest import pytest_terminal_summary")
    pytester.makepyfile(test_plain="def test_here():\n    assert True\n")
    result = pytester.runpytest("-p", "summary_plugin")
    result.assert_outcomes(passed=1)
    assert not any("server tests skipped" in line for line in result.outlines)
