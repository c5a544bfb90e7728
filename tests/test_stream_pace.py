"""One pace for a streaming bot passage: ``generation.stream_interval_s``, applied once, in the
queue (``_Throttle``); the adapters show what they are handed. The Discord and Slack settings
that paced their edits a second time are gone, and the config loader treats their names as it
treats any unknown one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.config import ConfigError, iter_settings, load_config
from bot.generation.queue import _Throttle

INTERVAL = 0.2


async def test_the_newest_text_goes_out_an_interval_after_the_listeners_are_done() -> None:
    throttle = _Throttle(INTERVAL)
    texts = aiter(throttle)
    throttle.put("The")
    assert await anext(texts) == "The"  # the first text goes out at once
    throttle.put("The lamp")
    await asyncio.sleep(INTERVAL * 1.5)  # the listeners take long over "The": longer than an interval
    throttle.put("The lamp was")
    throttle.put("The lamp was cold.")
    asked = time.monotonic()
    assert await anext(texts) == "The lamp was cold."  # only the newest; the rest starts when asked
    assert time.monotonic() - asked >= INTERVAL * 0.9
    throttle.close()
    with pytest.raises(StopAsyncIteration):
        await anext(texts)


async def test_no_text_no_update() -> None:
    throttle = _Throttle(0)
    texts = aiter(throttle)
    waiting = asyncio.ensure_future(anext(texts))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    throttle.close()
    with pytest.raises(StopAsyncIteration):
        await waiting


def test_there_is_one_streaming_setting() -> None:
    streaming = [f"{s.section}.{s.key}" for s in iter_settings() if "stream" in s.key]
    assert streaming == ["generation.stream_interval_s"]
    assert load_config(env={}).generation.stream_interval_s == 1.5


@pytest.mark.parametrize(
    ("section", "old"), [("discord", "stream_edit_interval_s"), ("slack", "stream_update_interval_s")]
)
def test_an_old_pace_setting_is_an_unknown_setting(
    section: str, old: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "old.toml"
    path.write_text(f"[{section}]\n{old} = 1.0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^unknown setting {section}\.{old} in .*old\.toml"):
        load_config(path, env={})
    # As environment variables they are ignored, like any STORYBOT_ variable that names no setting.
    assert load_config(env={f"STORYBOT_{section}_{old}".upper(): "1.0"}) == load_config(env={})
