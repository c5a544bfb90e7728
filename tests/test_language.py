"""The story's language, as the prompt names it to the model."""

from __future__ import annotations

import pytest

from bot.language import language_of, next_passage_request


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("The keeper climbed the stairs and lit the lamp, and the sea was loud.", "en"),
        ("La casa de los relojes estaba en silencio, y el reloj del salón se paró.", "es"),
        ("Le phare est éteint depuis des années, et elle monte dans la tour.", "fr"),
        ("Der Leuchtturm ist dunkel, und sie steigt mit der Lampe auf den Turm.", "de"),
        ("Il faro è spento da anni e lei non sa perché, ma sale lo stesso.", "it"),
        ("O farol não acende há anos, e ela sobe com uma lanterna na mão.", "pt"),
        ("雾里的茶馆只剩下一盏灯，老板娘还在等他。", "zh"),
        ("霧の中の茶屋には、灯りがひとつだけ残っていた。", "ja"),
    ],
)
def test_the_language_of_a_passage(text: str, code: str) -> None:
    found = language_of(text)
    assert found is not None and found.code == code


@pytest.mark.parametrize("text", ["", "1984. 2001!", "Mara", "Hm."])
def test_too_little_to_tell_is_none_and_asks_in_english(text: str) -> None:
    assert language_of(text) is None
    assert next_passage_request(text) == "Write the next passage of the story."


def test_the_request_names_the_language() -> None:
    assert next_passage_request("Le phare est éteint, et elle monte dans la tour.").endswith("en français.")
