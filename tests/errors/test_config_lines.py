"""config.lines.line_of on any text a technician's editor can save: a line in the file or none."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from config.lines import line_of

PIECES = st.sampled_from(
    [
        "[agent]",
        "[[devices]]",
        "[ devices ]",
        "[devices.cards]",
        "port = 1",
        '"port" = 2',
        "id = 'a'",
        "# [[devices]]",
        "",
        " ",
        "\r",
        "x",
        "[[devices]] # d",
        "\u00e9 = 1",
        "[",
        "]",
    ]
)
PATHS = st.tuples(st.sampled_from(["agent", "devices", "mqtt"])) | st.tuples(
    st.just("devices"), st.integers(0, 3), st.sampled_from(["port", "id", "cards"])
)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(PIECES | st.text(max_size=20), max_size=30), path=PATHS)
def test_line_of_is_a_line_of_the_text_or_none(
    lines: list[str], path: tuple[str | int, ...]
) -> None:
    text = "\n".join(lines)
    line = line_of(text, path)
    assert line is None or 1 <= line <= len(text.splitlines())


def test_line_of_finds_the_key_of_the_nth_device_and_not_one_in_a_comment() -> None:
    text = "[agent]\nport = 9\n[[devices]]\nport = 1\n# [[devices]]\n[[devices]]\n'port' = 2\n"
    assert line_of(text, ("devices", 1, "port")) == 7
    assert line_of(text, ("devices", 0, "port")) == 4
    assert line_of(text, ("devices", 2, "port")) is None
    assert line_of(text, ("agent", "id")) == 1  # a key left out: its table's header
