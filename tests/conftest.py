"""Shared fixtures live in tests/fixtures/, one module per concern, loaded here as plugins."""

pytest_plugins = [
    "tests.fixtures.media",
    "tests.fixtures.videos",
    "tests.fixtures.core",
    "tests.fixtures.postgres",
    "tests.fixtures.discord",
    "tests.fixtures.slack",
    "tests.fixtures.console",
    "tests.fixtures.gemini",
    "tests.fixtures.fal",
]
