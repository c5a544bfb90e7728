"""The content classifier on a tiny random model, and the moderation checker against a fake service.

The classifier's weights are random, so no test says what it thinks of a given text: the
thresholds at the ends of the scale (0 refuses everything, 1 passes everything), the shape of the
scores, the windows of a long text and what happens when the model is missing are what a
community would notice. The moderation service is faked on loopback (``tests.fake_moderation``),
speaking OpenAI's protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bench.models import build_random_classifier
from bot.config import ConfigError
from bot.generation.heavy import MODEL_THREAD, run_heavy
from bot.safety.checker import CheckerDown, Standard, Verdict
from bot.safety.classifier import ClassifierChecker
from bot.safety.moderation import ModerationChecker
from storage.models import ContentRating
from tests.conftest import CLASSIFIER_LABELS, CORPUS, make_config
from tests.fake_moderation import FakeModeration, running_fake_moderation
from tests.loopback import free_port

GENERAL = Standard(ContentRating.GENERAL)
TEEN = Standard(ContentRating.TEEN)
MATURE = Standard(ContentRating.MATURE)
TEXTS = [line for line in CORPUS.splitlines() if line]
KEY = "sk-test-7f3a9c1e5b"


# ---------------------------------------------------------------------------- the classifier


async def test_the_classifier_scores_every_label_of_its_model(tiny_classifier_dir: Path) -> None:
    checker = ClassifierChecker(str(tiny_classifier_dir), ["toxic=0.8"])
    scores = await checker.scores(TEXTS[0])
    assert set(scores) == set(CLASSIFIER_LABELS)
    assert all(0 < score < 1 for score in scores.values())
    # A multi-label model scores each label on its own (a sigmoid each): they need not sum to 1.
    assert abs(sum(scores.values()) - 1) > 0.05
    assert await checker.scores(TEXTS[0]) == scores  # the same text, the same scores


async def test_a_single_label_model_shares_its_score_out_among_its_labels(tmp_path: Path) -> None:
    build_random_classifier(
        tmp_path,
        TEXTS * 4,
        vocab_size=300,
        labels=("safe", "unsafe"),
        problem_type="single_label_classification",
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    scores = await ClassifierChecker(str(tmp_path), ["unsafe=0.9"]).scores(TEXTS[1])
    assert set(scores) == {"safe", "unsafe"}
    assert sum(scores.values()) == pytest.approx(1)


async def test_the_thresholds_decide(tiny_classifier_dir: Path) -> None:
    refuses_all = ClassifierChecker(str(tiny_classifier_dir), ["toxic=1.0", "threat=0.0"])
    passes_all = ClassifierChecker(str(tiny_classifier_dir), ["toxic=1.0", "obscene=1.0", "threat=1.0"])
    for text in TEXTS:
        assert await passes_all.check(text, GENERAL) == Verdict.PASS
        verdict = await refuses_all.check(text, TEEN)
        assert verdict == Verdict(
            False, "classifier", "the content classifier rated it too threat for a story rated teen"
        )


async def test_labels_are_matched_whatever_their_case(tiny_classifier_dir: Path) -> None:
    checker = ClassifierChecker(str(tiny_classifier_dir), ["TOXIC=0"])
    verdict = await checker.check(TEXTS[0], MATURE)
    assert verdict.reason == "the content classifier rated it too toxic for a story rated mature"


async def test_a_text_longer_than_the_model_window_is_judged_in_windows(tiny_classifier_dir: Path) -> None:
    """The tiny model has 64 positions: a text of hundreds of tokens is scored window by window,
    and the highest score of each label counts, so what comes after the first window matters."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir)
    text = " ".join(TEXTS[:2] * 3 + TEXTS[3:])
    ids = tokenizer(text)["input_ids"]
    assert len(ids) > 4 * 64
    with torch.inference_mode():  # what a model cut at its window would see
        first_window = torch.sigmoid(model(input_ids=torch.tensor([ids[:64]])).logits[0]).tolist()

    scores = await ClassifierChecker(str(tiny_classifier_dir), ["toxic=0.9"]).scores(text)

    for label, first in zip(CLASSIFIER_LABELS, first_window, strict=True):
        assert scores[label] >= first - 1e-6
    assert any(scores[label] > first + 1e-3 for label, first in zip(CLASSIFIER_LABELS, first_window, strict=True))


@pytest.mark.parametrize(
    ("thresholds", "complaint"),
    [
        ([], "safety.classifier_thresholds is empty"),
        (["toxic"], "safety.classifier_thresholds has 'toxic': each entry must be label=score"),
        (["toxic=high"], "safety.classifier_thresholds has 'toxic=high'"),
        (["toxic=1.5"], "safety.classifier_thresholds has 'toxic=1.5'"),
        (["=0.5"], "safety.classifier_thresholds has '=0.5'"),
        (["toxic=0.5", "toxic=0.7"], "safety.classifier_thresholds names 'toxic' twice"),
        (
            ["toxic=0.5", "rude=0.5"],
            "safety.classifier_thresholds names 'rude', which the classifier {folder} does not have;"
            " its labels: toxic, obscene, threat.",
        ),
    ],
)
def test_bad_thresholds_are_a_config_error(tiny_classifier_dir: Path, thresholds: list[str], complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ClassifierChecker(str(tiny_classifier_dir), thresholds)
    message = str(caught.value)
    assert complaint.format(folder=tiny_classifier_dir) in message
    assert "\n" not in message


def test_a_classifier_needs_a_model() -> None:
    with pytest.raises(ConfigError, match=r"^safety\.classifier_model is empty: "):
        ClassifierChecker("", ["toxic=0.5"])


async def test_a_missing_model_folder_is_a_checker_down_not_a_crash(tiny_classifier_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "classifier"
    checker = ClassifierChecker(str(folder), ["toxic=0.5"])  # the labels cannot be checked yet
    for attempt in (checker.load(), checker.check(TEXTS[0], GENERAL)):
        with pytest.raises(CheckerDown) as caught:
            await attempt
        assert str(caught.value) == (
            f"the content classifier's model folder {folder} does not exist (safety.classifier_model)"
        )

    shutil.copytree(tiny_classifier_dir, folder)  # the next check tries again
    assert set(await checker.scores(TEXTS[0])) == set(CLASSIFIER_LABELS)


async def test_a_folder_without_a_model_is_a_checker_down(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(CheckerDown) as caught:
        await ClassifierChecker(str(tmp_path), ["toxic=0.5"]).check(TEXTS[0], GENERAL)
    message = str(caught.value)
    assert message.startswith(f"the content classifier could not load {tmp_path}: ")
    assert "\n" not in message


async def test_a_label_the_model_lacks_is_found_when_it_loads(tiny_classifier_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "classifier"
    checker = ClassifierChecker(str(folder), ["rude=0.5"])  # nothing on disk to check against yet
    shutil.copytree(tiny_classifier_dir, folder)
    for _ in range(2):
        with pytest.raises(
            CheckerDown,
            match=r"^safety\.classifier_thresholds names 'rude', which the classifier .+ does not have;"
            r" its labels: toxic, obscene, threat\.$",
        ):
            await checker.check(TEXTS[0], GENERAL)
        shutil.rmtree(folder, ignore_errors=True)  # the second check does not load the model again


async def test_checks_that_arrive_together_share_one_load(
    tiny_classifier_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.safety.classifier")
    checker = ClassifierChecker(str(tiny_classifier_dir), ["toxic=1.0"])
    verdicts = await asyncio.gather(*(checker.check(text, GENERAL) for text in TEXTS[:3]))
    assert verdicts == [Verdict.PASS] * 3
    assert sum("loaded" in record.getMessage() for record in caplog.records) == 1


@pytest.fixture
def busy_model_thread() -> Iterator[threading.Event]:
    """The model thread held, as a continuous generation batch holds it for tens of seconds,
    until the test sets the event (or ends)."""
    started, release = threading.Event(), threading.Event()

    def batch() -> None:
        started.set()
        release.wait()

    running = MODEL_THREAD.submit(batch)
    assert started.wait(30), "the model thread is busy with something else"
    yield release
    release.set()
    running.result(30)


async def test_a_check_does_not_wait_behind_generation(
    tiny_classifier_dir: Path, busy_model_thread: threading.Event
) -> None:
    checker = ClassifierChecker(str(tiny_classifier_dir), ["toxic=1.0"])
    try:
        # the first check loads the model too: seconds, but never the batch's tens of seconds
        assert await asyncio.wait_for(checker.check(TEXTS[0], GENERAL), 60) == Verdict.PASS
        assert await asyncio.wait_for(checker.check(TEXTS[1], GENERAL), 10) == Verdict.PASS
    finally:
        await checker.close()


async def test_model_work_that_times_out_before_it_starts_lets_the_batch_take_turns_again(
    busy_model_thread: threading.Event,
) -> None:
    assert not MODEL_THREAD.contended  # the batch runs, nothing waits behind it
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_heavy(lambda: "loaded", model_work=True), 0.05)
    assert not MODEL_THREAD.contended  # the cancelled job will never run: new turns may join
    busy_model_thread.set()
    assert await run_heavy(lambda: "loaded", model_work=True) == "loaded"
    assert not MODEL_THREAD.contended


# In a fresh process, as in the bot: the first check also imports torch and transformers, which
# take seconds; a 10 ms ticker on the event loop must keep ticking all the while.
FIRST_CHECK = """
import asyncio, json, sys, time

from bot.safety.checker import Standard
from bot.safety.classifier import ClassifierChecker


async def main():
    assert "torch" not in sys.modules and "transformers" not in sys.modules
    ticks = []

    async def tick():
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    checker = ClassifierChecker(sys.argv[1], ["toxic=0.5"])
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    began = time.perf_counter()
    await checker.check("The lamp was cold.", Standard())
    ended = time.perf_counter()
    ticker.cancel()
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    print(json.dumps({"seconds": ended - began, "ticks": sum(began < t < ended for t in ticks), "gap": max(gaps)}))


asyncio.run(main())
"""


def test_the_first_check_leaves_the_event_loop_free(tiny_classifier_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_CHECK, str(tiny_classifier_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["seconds"] > 0.5, figures  # the imports and the load were measured
    assert figures["ticks"] >= figures["seconds"] / 0.01 / 4, figures
    assert figures["gap"] < 1.0, figures


# ---------------------------------------------------------------------------- the moderation service


@pytest.fixture
async def service() -> AsyncIterator[FakeModeration]:
    async with running_fake_moderation() as server:
        server.triggers = {
            "idiot": ("harassment",),
            "blade": ("violence",),
            "kiss": ("sexual",),
            "hex": ("harassment/threatening", "hate"),
        }
        yield server


async def _moderation(tmp_path: Path, env: dict[str, str]) -> ModerationChecker:
    config = make_config(tmp_path, env)
    return ModerationChecker.from_config(config.safety, config.openai)


@pytest.fixture
async def moderation(service: FakeModeration, tmp_path: Path) -> AsyncIterator[ModerationChecker]:
    checker = await _moderation(
        tmp_path,
        {
            "STORYBOT_SAFETY_MODERATION_URL": service.url,
            "STORYBOT_SAFETY_MODERATION_API_KEY": KEY,
            "STORYBOT_SAFETY_TIMEOUT_S": "0.5",
        },
    )
    yield checker
    await checker.close()


async def test_a_flagged_text_fails_with_the_categories(moderation: ModerationChecker) -> None:
    assert await moderation.check("The lamp was cold.", GENERAL) == Verdict.PASS
    assert await moderation.check("Out, you idiot!", GENERAL) == Verdict(
        False, "moderation", "the moderation service flagged it (harassment) for a story rated general"
    )
    verdict = await moderation.check("She cast a hex on him.", GENERAL)
    assert verdict.reason == (
        "the moderation service flagged it (harassment/threatening, hate) for a story rated general"
    )


async def test_each_rating_allows_its_categories(moderation: ModerationChecker) -> None:
    """The defaults: a teen story may be flagged for violence; a mature one for violence, sexual
    content and harassment too."""
    blade, kiss = "He drew the blade.", "They kiss at the harbour."
    assert not (await moderation.check(blade, GENERAL)).passed
    assert await moderation.check(blade, TEEN) == Verdict.PASS
    assert await moderation.check(blade, MATURE) == Verdict.PASS
    assert (await moderation.check(kiss, TEEN)).reason == (
        "the moderation service flagged it (sexual) for a story rated teen"
    )
    assert await moderation.check(kiss, MATURE) == Verdict.PASS
    assert (await moderation.check("A hex on you, idiot.", MATURE)).reason == (
        "the moderation service flagged it (harassment/threatening, hate) for a story rated mature"
    )


async def test_the_allowed_categories_are_settings(service: FakeModeration, tmp_path: Path) -> None:
    checker = await _moderation(
        tmp_path,
        {"STORYBOT_SAFETY_MODERATION_URL": service.url, "STORYBOT_SAFETY_MODERATION_ALLOW_TEEN": "violence,sexual"},
    )
    try:
        assert await checker.check("They kiss.", TEEN) == Verdict.PASS
    finally:
        await checker.close()


async def test_the_model_is_named_only_when_set(service: FakeModeration, tmp_path: Path) -> None:
    plain = await _moderation(tmp_path, {"STORYBOT_SAFETY_MODERATION_URL": service.url})
    named = await _moderation(
        tmp_path,
        {"STORYBOT_SAFETY_MODERATION_URL": service.url, "STORYBOT_SAFETY_MODERATION_MODEL": "text-moderation-stable"},
    )
    try:
        await plain.check("The sea was loud.", GENERAL)
        await named.check("The sea was loud.", GENERAL)
    finally:
        await plain.close()
        await named.close()
    assert [request["body"] for request in service.requests] == [
        {"input": "The sea was loud."},
        {"input": "The sea was loud.", "model": "text-moderation-stable"},
    ]
    assert "Authorization" not in service.requests[0]["headers"]


async def test_without_its_own_url_and_key_it_uses_the_openai_servers(service: FakeModeration, tmp_path: Path) -> None:
    checker = await _moderation(tmp_path, {"STORYBOT_OPENAI_BASE_URL": service.url, "STORYBOT_OPENAI_API_KEY": KEY})
    try:
        assert not (await checker.check("You idiot.", GENERAL)).passed
    finally:
        await checker.close()
    assert service.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("fault", "complaint"),
    [
        ({"status": 500}, "the moderation service answered HTTP 500 Internal Server Error"),
        ({"status": 401}, "the moderation service answered HTTP 401 Unauthorized"),
        ({"hang": True}, "the moderation service did not answer within 0.5 s"),
        ({"raw": "<html>Bad gateway</html>"}, "the moderation service's answer is not a moderation result"),
        ({"raw": '{"results": []}'}, "the moderation service's answer is not a moderation result"),
        ({"raw": '{"results": [{"flagged": "yes"}]}'}, "the moderation service's answer is not a moderation result"),
    ],
)
async def test_a_failing_service_is_a_checker_down(
    service: FakeModeration, moderation: ModerationChecker, fault: dict[str, object], complaint: str
) -> None:
    for name, value in fault.items():
        setattr(service, name, value)
    with pytest.raises(CheckerDown) as caught:
        await moderation.check("The lamp was cold.", GENERAL)
    assert str(caught.value) == complaint


async def test_a_service_that_is_not_there_is_a_checker_down(tmp_path: Path) -> None:
    checker = await _moderation(tmp_path, {"STORYBOT_SAFETY_MODERATION_URL": f"http://127.0.0.1:{free_port()}/v1"})
    try:
        with pytest.raises(CheckerDown, match=r"^the moderation service cannot be reached \(\w+\)$"):
            await checker.check("The lamp was cold.", GENERAL)
    finally:
        await checker.close()


async def test_the_key_is_sent_and_never_shown(
    service: FakeModeration, moderation: ModerationChecker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages = [(await moderation.check("You idiot.", GENERAL)).reason]
    for fault in ({"status": 401}, {"raw": "nonsense"}, {"hang": True}):
        service.status, service.raw, service.hang = 200, None, False
        for name, value in fault.items():
            setattr(service, name, value)
        with pytest.raises(CheckerDown) as caught:
            await moderation.check("You idiot.", GENERAL)
        messages.append(str(caught.value))

    assert {request["headers"]["Authorization"] for request in service.requests} == {f"Bearer {KEY}"}
    assert KEY not in caplog.text
    assert not [message for message in messages if KEY in message]
