"""The word-list checker: what a story of each rating may say, and the disguises it sees through.

These tests use the shipped lists (a moderation list holds the words it bans, so they appear
here), plus config and channel entries where a test needs a word of its own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError, SafetyConfig
from bot.safety.checker import Standard, Verdict
from bot.safety.wordlist import WordListChecker
from storage.models import ContentRating

GENERAL = Standard(ContentRating.GENERAL)
TEEN = Standard(ContentRating.TEEN)
MATURE = Standard(ContentRating.MATURE)

PASSAGE = (
    "The lighthouse keeper climbed the stairs at dusk. The lamp was cold, and the sea was loud. "
    "J. R. R. Tolkien's maps lay on the table beside a cocktail glass, 3 candles and a 2024 almanac "
    '(100% accurate, it claimed, for $5). "Who goes there?" asked the guard of Sussex. The '
    "assassin smiled, for her therapist in Scunthorpe had said the grapes were ripe. "
)


@pytest.fixture(scope="module")
def shipped() -> WordListChecker:
    return WordListChecker.from_config(SafetyConfig())


def words_checker(**settings: Any) -> WordListChecker:
    return WordListChecker.from_config(SafetyConfig(**settings))


async def refused(checker: WordListChecker, text: str, standard: Standard = GENERAL) -> Verdict:
    verdict = await checker.check(text, standard)
    assert not verdict.passed, text
    assert verdict.checker == "words"
    return verdict


async def passed(checker: WordListChecker, text: str, standard: Standard = GENERAL) -> None:
    verdict = await checker.check(text, standard)
    assert verdict.passed, (text, verdict.found)


# ---------------------------------------------------------------- whole words


@pytest.mark.parametrize("text", ["Scunthorpe", "assassin", "cocktail", "Sussex", "therapist", "grapes", PASSAGE])
async def test_words_inside_other_words_pass(text: str) -> None:
    checker = words_checker(ban_general=("ass", "cock", "sex", "rape"))
    await passed(checker, text)


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("You cunt.", "cunt"),
        ("Kiss my ass!", "ass"),
        ("A big cock", "cock"),
        ("Sex, again", "Sex"),
        ("He was a rapist", "rapist"),
        ("_rape_", "rape"),
    ],
)
async def test_the_word_itself_fails(text: str, word: str) -> None:
    checker = words_checker(ban_general=("ass", "cock", "sex", "rape"))
    assert (await refused(checker, text)).found == (word,)


@pytest.mark.parametrize(
    "text", ["purple monkey", "Purple, monkey!", "PURPLE -- monkey", "purple\n\nmonkey", "purple_monkey"]
)
async def test_a_phrase_matches_across_spaces_and_punctuation(text: str) -> None:
    assert (await refused(words_checker(ban_general=("purple monkey",)), text)).found == (text.strip("!"),)


@pytest.mark.parametrize("text", ["purplemonkey", "purple monkeys", "a purple and a monkey"])
async def test_a_phrase_needs_its_words_together(text: str) -> None:
    await passed(words_checker(ban_general=("purple monkey",)), text)


async def test_a_star_matches_continuations_but_not_words_ending_in_it(shipped: WordListChecker) -> None:
    assert (await refused(shipped, "Fucking hell, you fucker. Fuck.")).found == ("Fucking", "fucker", "Fuck")
    checker = words_checker(ban_general=("zorp*",))
    assert (await refused(checker, "zorping")).found == ("zorping",)
    await passed(checker, "unzorp")


# ---------------------------------------------------------------- scripts written without spaces


@pytest.mark.parametrize(
    ("banned", "text"),
    [
        ("傻逼", "你是傻逼吗"),  # Chinese
        ("バカ", "お前はバカだ"),  # Japanese
        ("ควาย", "แกมันควายจริงๆ"),  # Thai
    ],
)
async def test_a_channel_ban_in_a_script_without_spaces_matches_inside_a_sentence(
    shipped: WordListChecker, banned: str, text: str
) -> None:
    verdict = await refused(shipped, text, Standard(ContentRating.MATURE, banned=(banned,)))
    assert verdict.reason == "it uses words this channel's moderators banned"
    assert verdict.found == (banned,)


@pytest.mark.parametrize(
    ("banned", "other"),
    [
        ("バカ", "お前はハカだ"),  # Japanese: the voicing mark makes another word
        ("ควาย", "แกมันคว่ายจริงๆ"),  # Thai: a tone mark makes another word
    ],
)
async def test_marks_that_are_part_of_a_script_are_kept(shipped: WordListChecker, banned: str, other: str) -> None:
    await passed(shipped, other, Standard(ContentRating.MATURE, banned=(banned,)))


async def test_a_config_ban_in_chinese_matches_inside_a_sentence() -> None:
    checker = words_checker(ban_general=("傻逼", "ass"))
    assert (await refused(checker, "你是傻逼吗？")).found == ("傻逼",)
    await passed(checker, "你是傻逼吗", TEEN)  # a general ban, as in any script
    await passed(checker, "Scunthorpe and the assassin")  # a Latin entry still wants a whole word


async def test_a_latin_word_in_a_sentence_without_spaces_is_a_word(shipped: WordListChecker) -> None:
    """A Latin word touching Chinese is a word of its own; a ``*`` continues it only in Latin."""
    assert (await refused(shipped, "你fucking吗")).found == ("fucking",)
    checker = words_checker(ban_general=("ass",))
    assert (await refused(checker, "他是ass吗")).found == ("ass",)
    await passed(checker, "他是assassin吗")


# ---------------------------------------------------------------- disguises


@pytest.mark.parametrize(
    "text",
    [
        "fu\u200bck",  # zero-width space
        "f\u200cu\u200dck",  # zero-width non-joiner and joiner
        "fu\u2060ck",  # word joiner
        "fu\ufeffck",  # byte-order mark (zero-width no-break space)
        "fu\u00adck",  # soft hyphen
        "f\u202eu\u202cck",  # bidi override
        "\u0455hit",  # Cyrillic ѕ
        "ѕһіt",  # Cyrillic ѕ, һ, і
        "fυck",  # Greek υ
        "ΒΙΤCΗ",  # Greek capitals
        "ｆｕｃｋ",  # fullwidth
        "𝐟𝐮𝐜𝐤",  # mathematical bold
        "fück",  # accent
        "f\u0336u\u0336c\u0336k\u0336",  # combining long stroke overlay
        "sh1t",
        "$hit",
        "sh!t",
        "a$$hole",
        "fuck3r",
        "f.u.c.k",
        "f u c k",
        "f-u-c-k",
        "f_u_c_k",
        "s*h*i*t",
    ],
)
async def test_disguised_words_fail_and_are_reported_as_written(shipped: WordListChecker, text: str) -> None:
    verdict = await refused(shipped, f"Oh {text}, said the knight.")
    assert verdict.found == (text,)


@pytest.mark.parametrize(
    "text",
    [
        "I'm 100% sure.",
        "It cost $5 in 2024!",
        "Wow!!",
        "J. R. R. Tolkien",
        "grades a b and c",
        "Plan A, B or C: call 555-0134.",
    ],
)
async def test_numbers_initials_and_single_letters_make_no_words(text: str) -> None:
    # each banned word is what a careless normaliser would make of one of these texts
    checker = words_checker(ban_general=("ioo", "ss", "2o2a", "wowii", "jrr", "ab", "abc", "ioi3a"))
    await passed(checker, text)


async def test_every_hit_is_found_once_in_order(shipped: WordListChecker) -> None:
    verdict = await refused(shipped, "Shit. sh1t! SHIT, then a bitch and more shit.")
    assert verdict.found == ("Shit", "sh1t", "SHIT", "bitch", "shit")


async def test_the_reason_names_the_rating_but_not_the_word(shipped: WordListChecker) -> None:
    verdict = await refused(shipped, "What the fuck")
    assert verdict.reason == "it uses words not allowed in a story rated general"
    verdict = await refused(shipped, "a blowjob", TEEN)
    assert verdict.reason == "it uses words not allowed in a story rated teen"


async def test_a_long_passage_is_checked_quickly(shipped: WordListChecker) -> None:
    # ten thousand characters with every kind of disguise the normaliser undoes, and a long token:
    # a few milliseconds, so a slip into quadratic time shows
    text = (PASSAGE + "Ѕhe said ｗｏｒｄｓ; a b c d e f! x1y2z3 " + "k" * 200 + " ")[:1000] * 10
    started = time.perf_counter()
    await passed(shipped, text)
    assert time.perf_counter() - started < 0.25


# ---------------------------------------------------------------- ratings


async def test_general_words_pass_in_teen_and_mature_stories(shipped: WordListChecker) -> None:
    await refused(shipped, "Oh shit.", GENERAL)
    await passed(shipped, "Oh shit.", TEEN)
    await passed(shipped, "Oh shit.", MATURE)


async def test_teen_words_fail_in_general_and_teen_stories_only(shipped: WordListChecker) -> None:
    await refused(shipped, "a blow job", GENERAL)
    await refused(shipped, "a blow job", TEEN)
    await passed(shipped, "a blow job", MATURE)


@pytest.mark.parametrize("standard", [GENERAL, TEEN, MATURE])
async def test_mature_list_words_fail_in_every_story(shipped: WordListChecker, standard: Standard) -> None:
    assert (await refused(shipped, "jailbait", standard)).reason.endswith(f"rated {standard.rating.value}")
    await refused(shipped, "underage nudes", standard)  # a re: entry


# ---------------------------------------------------------------- config


async def test_config_bans_reach_as_their_files_do() -> None:
    checker = words_checker(ban_general=("glorp",), ban_teen=("zorp*",), ban_mature=("blarg",))
    await refused(checker, "glorp", GENERAL)
    await passed(checker, "glorp", TEEN)
    await refused(checker, "zorping", TEEN)
    await passed(checker, "zorping", MATURE)
    await refused(checker, "blarg", MATURE)


async def test_config_allow_takes_a_shipped_entry_out() -> None:
    checker = words_checker(allow=("Shit*",))
    await passed(checker, "Oh shit, shitting bricks.")
    await refused(checker, "bullshit")  # its own entry


async def test_config_allow_naming_no_entry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    words_checker(allow=("shit",))  # the list says shit*
    assert "safety.allow: 'shit' is not an entry of the word lists" in caplog.text


def write_lists(folder: Path, general: str = "", teen: str = "", mature: str = "") -> Path:
    for name, text in (("general", general), ("teen", teen), ("mature", mature)):
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


async def test_lists_dir_replaces_the_shipped_lists(tmp_path: Path) -> None:
    checker = words_checker(lists_dir=str(write_lists(tmp_path, general="# mine\n\nglorp\n")))
    await refused(checker, "glorp")
    await passed(checker, "oh fuck, jailbait")


def test_lists_dir_without_a_list_is_refused(tmp_path: Path) -> None:
    write_lists(tmp_path)
    (tmp_path / "teen.txt").unlink()
    with pytest.raises(ConfigError, match=r"safety\.lists_dir: .*teen\.txt is missing"):
        words_checker(lists_dir=str(tmp_path))


def test_an_invalid_pattern_names_its_file_and_line(tmp_path: Path) -> None:
    write_lists(tmp_path, teen="# patterns\n\nre:(unclosed\n")
    with pytest.raises(ConfigError) as error:
        words_checker(lists_dir=str(tmp_path))
    message = str(error.value)
    assert f"{tmp_path / 'teen.txt'} line 3: 're:(unclosed' is not a valid regular expression" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [("re:[a-", "is not a valid regular expression"), ("re:x*", "matches an empty text"), ("--", "has no letter")],
)
def test_a_bad_config_entry_names_its_setting(entry: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=rf"^safety\.ban_teen: .*{complaint}"):
        words_checker(ban_teen=(entry,))


# ---------------------------------------------------------------- channels


async def test_channel_bans_apply_whatever_the_rating(shipped: WordListChecker) -> None:
    standard = Standard(ContentRating.MATURE, banned=("glorp", "re:\\bzo+rp\\b"))
    verdict = await refused(shipped, "Glorp! said the zooorp.", standard)
    assert verdict.reason == "it uses words this channel's moderators banned"
    assert verdict.found == ("Glorp", "zooorp")
    await passed(shipped, "Glorp! said the zooorp.", MATURE)


async def test_channel_allowed_takes_list_entries_out_for_that_channel(shipped: WordListChecker) -> None:
    standard = Standard(ContentRating.GENERAL, allowed=("fuck*",))
    await passed(shipped, "fucking hell", standard)
    await refused(shipped, "fucking hell", GENERAL)
    await refused(shipped, "oh shit", standard)


async def test_channel_allowed_cannot_take_out_what_every_story_refuses() -> None:
    checker = words_checker(ban_mature=("blarg",))
    standard = Standard(ContentRating.MATURE, allowed=("jailbait", "blarg"))
    await refused(checker, "jailbait", standard)
    await refused(checker, "blarg", standard)
    assert "jailbait" in checker.decode_bans(standard)


async def test_a_bad_channel_ban_is_skipped(shipped: WordListChecker) -> None:
    await refused(shipped, "glorp", Standard(banned=("re:(", "glorp")))


# ---------------------------------------------------------------- decode bans


def test_decode_bans_are_the_plain_entries_of_the_standard(shipped: WordListChecker) -> None:
    general = shipped.decode_bans(GENERAL)
    assert {"fuck", "Fuck", "motherfuck", "blow job", "Blow job", "jailbait", "Jailbait"} <= set(general)
    assert not [word for word in general if "re:" in word or "*" in word or "\\" in word]
    assert "fuck" not in shipped.decode_bans(TEEN)
    assert "jailbait" in shipped.decode_bans(MATURE)
    channel = shipped.decode_bans(Standard(ContentRating.GENERAL, banned=("glorp*",), allowed=("shit*",)))
    assert "glorp" in channel
    assert "shit" not in channel


def test_decode_bans_hold_an_entry_as_written_and_as_folded() -> None:
    checker = words_checker(ban_mature=("a$$",))
    assert {"a$$", "ass", "Ass"} <= set(checker.decode_bans(MATURE))
