"""The peers benchmark's pure helpers (bench.peers): prompt choice and the tables; no model."""

from __future__ import annotations

from bench.peers import (
    FirstToken,
    Throughput,
    first_token_table,
    markdown_table,
    ratio,
    spread,
    story_prompts,
    throughput_table,
)
from bot.context import COMPLETION

STORYBOT = "storybot"


def test_spread_takes_evenly_spaced_items_from_first_to_last():
    assert spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread(list(range(10)), 1) == [0]
    assert spread([1, 2], 8) == [1, 2]


def test_story_prompts_are_distinct_openings_within_the_token_range_shortest_first():
    def tokens(text: str) -> int:  # about four characters a token in English
        return len(text) // 4

    prompts = story_prompts(COMPLETION, tokens, 4)
    lengths = [tokens(p) for p in prompts]
    assert len(set(prompts)) == 4
    assert lengths == sorted(lengths)
    assert all(120 <= n <= 300 for n in lengths)


def test_ratio_is_a_multiple_or_a_dash():
    assert ratio(30.0, 20.0) == "1.50x"
    assert ratio(None, 20.0) == "-"
    assert ratio(30.0, None) == "-"
    assert ratio(30.0, 0.0) == "-"


def test_markdown_table_pads_columns_and_right_aligns_numbers():
    table = markdown_table(["system", "tokens/s"], [["a", "1.0"], ["longer", "22.5"]])
    assert table.splitlines() == [
        "| system | tokens/s |",
        "|--------|---------:|",
        "| a      |      1.0 |",
        "| longer |     22.5 |",
    ]


def test_throughput_table_compares_every_row_with_storybot():
    rows = [Throughput("transformers", 10.0, 40.0), Throughput(STORYBOT, 20.0, 80.0)]
    lines = throughput_table(rows, STORYBOT, 8).splitlines()
    assert "8 at once (tokens/s)" in lines[0]
    assert [cell.strip() for cell in lines[2].strip("|").split("|")] == [
        "transformers",
        "10.0",
        "40.0",
        "0.50x",
        "0.50x",
    ]
    assert lines[3].rstrip(" |").endswith("1.00x")


def test_first_token_table_shows_the_reported_prompt_time_where_there_is_one():
    rows = [FirstToken(STORYBOT, 500.0, None), FirstToken("llama.cpp Q8_0", 750.4, 740.0)]
    lines = first_token_table(rows, STORYBOT).splitlines()
    assert [cell.strip() for cell in lines[2].strip("|").split("|")] == [STORYBOT, "500", "-", "1.00x"]
    assert [cell.strip() for cell in lines[3].strip("|").split("|")] == ["llama.cpp Q8_0", "750", "740", "1.50x"]
