"""The openai backend: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, TGI, OpenAI).

Text streams back as server-sent events from ``/completions`` (the prompt continued as raw text)
or ``/chat/completions`` (``bot.context.chat_messages``: the novelist's instruction as the
system message, the story prompt and the request, in the story's language, as the user's). Either way the request starts with bytes that change rarely — the instruction,
then the story's title, memory and oldest passages — so vLLM's automatic prefix caching reuses
the work done for the channel's previous turn.

Choices this module makes (see also the ``[openai]`` settings):

- Requests of one ``generate`` call are sent at once, one thread each, so a batch reaches the
  server's continuous batching together; requests that arrive meanwhile are sent as they come.
- Failures before any text arrived (no connection, timeouts, HTTP 5xx and 429) are retried with
  exponential backoff, then become one ``ModelUnavailable`` line. Once text has streamed, a
  dropped connection ends the passage with the text received: that text is already on people's
  screens, a fresh attempt would replace it with a different one, and the queue trims the
  passage to its last complete sentence anyway.
- The server gets at most four stop texts (OpenAI's limit); every stop text is also checked
  here, and the stream is closed as soon as one appears.
- ``top_k``, ``repetition_penalty``, ``min_tokens`` and ``bad_words`` are not in OpenAI's API;
  they are sent only when ``openai.send_extra_sampling`` is on (the default, for vLLM; OpenAI
  itself rejects them).
- Cancelling a request shuts its connection at once, even while the server is still working on
  the first token (as soon as it has sent the response headers, which vLLM does immediately).
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bot.config import Adapter, Config
from bot.context import CHAT_SYSTEM, COMPLETION, PromptFrame, chat_messages
from bot.generation.backend import GenerationRequest, ModelUnavailable
from bot.generation.text import cut_at_stops
from bot.language import LONGEST_REQUEST, next_passage_request

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CONTEXT_LENGTH = 4096
MAX_SERVER_STOPS = 4  # OpenAI rejects more; other servers take them, but one limit is simpler
BYTES_PER_TOKEN = 3  # without the model's tokenizer: fewer bytes per token than any real text has
CHAT_TEMPLATE_TOKENS = 32  # what a chat template adds around the two messages, generously
_SUPERVISE_INTERVAL_S = 0.05
_MAX_STREAMS = 64  # the most rows generation.max_batch allows in flight
_MAX_RETRY_AFTER_S = 30.0
_MAX_DETAIL_CHARS = 200
_EXTRA_SAMPLING_FIELDS = ("top_k", "repetition_penalty", "min_tokens", "bad_words")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class _Retryable(Exception):
    """A failure before any text arrived that may go away: no connection, 5xx, 429."""

    def __init__(self, reason: str, *, unreachable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable
        self.retry_after = retry_after


class _Stream:
    """One request's text so far, and the socket its response arrives on (to cut it on cancel)."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.text = ""
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, response: httpx.Response) -> None:
        network = response.extensions.get("network_stream")
        with self._lock:
            self._socket = network.get_extra_info("socket") if network is not None else None

    def detach(self) -> None:
        with self._lock:
            self._socket = None

    def abort(self) -> None:
        """Called from the supervising thread: wakes a read that is waiting on the server."""
        with self._lock:
            if self._socket is not None:
                try:
                    self._socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed

    def add(self, piece: str) -> bool:
        """Append streamed text; True when a stop text has appeared (the text is cut before it)."""
        if not piece:
            return False
        text = self.text + piece
        cut = cut_at_stops(text, self.request.stop_texts)
        if cut != self.text and self.request.on_text is not None:
            self.request.on_text(cut)
        self.text = cut
        return len(cut) < len(text)


class OpenAIBackend:
    """Generation on an OpenAI-compatible HTTP server, with a local token count for the prompt budget."""

    def __init__(self, config: Config, model_name: str | None = None) -> None:
        self.settings = config.openai
        self.model_name = model_name or config.model.name
        # openai.model names the default model on the server; a model a story picked from
        # model.allowed is sent under its own name, and a named model's adapter by NAME (the name
        # vLLM serves it by: --lora-modules NAME=path).
        use_alias = bool(self.settings.model) and self.model_name == config.model.name
        self.served_model = self.settings.model if use_alias else self.model_name
        self.base_url = self.settings.base_url.rstrip("/")
        self.path = "/chat/completions" if self.settings.endpoint == "chat" else "/completions"
        self.url = self.base_url + self.path
        self._configured_context = config.model.context_length
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._tokenizer: Any = None
        self._context_length = 0

    # ------------------------------------------------------------------ Backend protocol

    def load(self, adapter: Adapter | None = None) -> None:
        """Check that the server answers and read its context length; load a local tokenizer if there
        is one. The server holds the adapters: a request names its own."""
        with self._lock:
            if self._client is not None:
                return
            headers = {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}
            timeout = httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s)
            client = httpx.Client(headers=headers, timeout=timeout)
            try:
                server_context = self._with_retries(lambda: self._server_context_length(client), None)
            except BaseException:
                client.close()
                raise
            self._tokenizer = _local_tokenizer(self.model_name)
            context = self._configured_context or server_context or DEFAULT_CONTEXT_LENGTH
            if self.settings.endpoint == "chat":
                context -= self._count(CHAT_SYSTEM + LONGEST_REQUEST) + CHAT_TEMPLATE_TOKENS
            self._context_length = max(context, 1)
            self._client = client
            log.info("model server %s ready: model %s, context %d tokens", self.base_url, self.served_model, context)

    @property
    def loaded(self) -> bool:
        return self._context_length > 0  # set last, once everything else is ready

    @property
    def context_length(self) -> int:
        """Tokens for the story prompt plus the passage; in chat mode, less the instruction's share."""
        self.load()
        return self._context_length

    def count_tokens(self, text: str) -> int:
        self.load()
        return self._count(text)

    @property
    def prompt_frame(self) -> PromptFrame:
        """The completions API continues text as it is: the server applies no template."""
        return COMPLETION

    def generate(
        self, requests: Sequence[GenerationRequest], more: Callable[[], Sequence[GenerationRequest]] | None = None
    ) -> list[str]:
        """Send every request at once, and each one ``more`` hands over as it arrives; this thread
        watches for cancellations while they stream."""
        self.load()
        running: dict[Future[str], _Stream] = {}
        error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=_MAX_STREAMS, thread_name_prefix="openai-stream") as pool:

            def send(batch: Sequence[GenerationRequest]) -> list[Future[str]]:
                streams = [_Stream(request) for request in batch]
                futures = [pool.submit(self._run, stream) for stream in streams]
                running.update(zip(futures, streams, strict=True))
                return futures

            first = send(requests)
            while running:
                finished, _ = wait(running, timeout=_SUPERVISE_INTERVAL_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    del running[future]
                    error = error or future.exception()
                for stream in running.values():
                    if stream.request.cancelled.is_set():
                        stream.abort()
                if more is not None and error is None:
                    send(more())
        if error is not None:
            raise error
        return [future.result() for future in first]

    # ------------------------------------------------------------------ one request

    def _run(self, stream: _Stream) -> str:
        body = self._body(stream.request)
        self._with_retries(lambda: self._stream_once(stream, body), stream.request.cancelled)
        if stream.request.on_done is not None:
            stream.request.on_done(stream.text)
        return stream.text

    def _with_retries(self, attempt: Callable[[], T], cancelled: threading.Event | None) -> T | None:
        """Run ``attempt`` until it succeeds, retrying ``_Retryable`` failures with exponential backoff.

        Returns None when ``cancelled`` is set during a wait; raises ``ModelUnavailable`` when
        the retries are used up.
        """
        failures = 0
        while True:
            try:
                return attempt()
            except _Retryable as failure:
                if failures == self.settings.retries:
                    raise self._unavailable(failure) from None
                delay = failure.retry_after
                if delay is None:
                    delay = self.settings.retry_backoff_s * 2**failures
                failures += 1
                log.warning("model server %s: %s; retrying in %.1f s", self.base_url, failure.reason, delay)
                if cancelled is None:
                    time.sleep(delay)
                elif cancelled.wait(delay):
                    return None

    def _stream_once(self, stream: _Stream, body: dict[str, Any]) -> None:
        """One HTTP request streamed into ``stream``; raises ``_Retryable`` if it failed before any text."""
        client = self._client
        assert client is not None, "load() first"
        if stream.request.cancelled.is_set():
            return
        try:
            with client.stream("POST", self.url, json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._status_failure(response)
                stream.attach(response)
                try:
                    self._read_events(stream, response)
                finally:
                    stream.detach()
        except httpx.TransportError as error:
            if stream.request.cancelled.is_set():
                return
            reason = self._transport_reason(error)
            if not stream.text:
                raise _Retryable(
                    reason, unreachable=isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
                ) from None
            log.warning(
                "model server %s dropped a stream (%s); keeping the %d characters received",
                self.base_url,
                reason,
                len(stream.text),
            )
        except _StreamEnded as ended:
            if not stream.text:
                raise _Retryable(str(ended), unreachable=False) from None
            log.warning(
                "model server %s: %s; keeping the %d characters received", self.base_url, ended, len(stream.text)
            )

    def _read_events(self, stream: _Stream, response: httpx.Response) -> None:
        """Append each event's text until [DONE], a stop text, or a cancel; raise ``_StreamEnded`` if cut short."""
        finished = False
        for data in _sse_data(response.iter_lines()):
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except json.JSONDecodeError:
                raise _StreamEnded(f"the server sent an event that is not JSON: {_one_line(data)}") from None
            if not isinstance(event, dict):
                raise _StreamEnded("the server sent an event that is not a JSON object")
            if "error" in event or event.get("object") == "error":
                raise _StreamEnded(f"the server reported an error: {_error_detail(event)}")
            for choice in event.get("choices") or ():
                if stream.add(self._piece(choice)):
                    return
                finished = finished or bool(choice.get("finish_reason"))
            if stream.request.cancelled.is_set():
                return
        if not finished:
            raise _StreamEnded("the stream ended before the server said it was done")

    def _piece(self, choice: dict[str, Any]) -> str:
        if self.settings.endpoint == "chat":
            piece = (choice.get("delta") or {}).get("content")
        else:
            piece = choice.get("text")
        return piece if isinstance(piece, str) else ""

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": request.adapter.name if request.adapter is not None else self.served_model,
            "stream": True,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if self.settings.endpoint == "chat":
            body["messages"] = chat_messages(request.prompt, next_passage_request(request.prompt))
        else:
            body["prompt"] = request.prompt
        if request.stop_texts:
            body["stop"] = list(request.stop_texts[:MAX_SERVER_STOPS])
        if self.settings.send_extra_sampling:
            body["top_k"] = sampling.top_k if sampling.top_k > 0 else -1  # -1 = no limit in vLLM and llama.cpp
            body["repetition_penalty"] = sampling.repetition_penalty
            body["min_tokens"] = min(sampling.min_new_tokens, sampling.max_new_tokens)
            if sampling.bad_words:
                body["bad_words"] = list(sampling.bad_words)
        return body

    # ------------------------------------------------------------------ helpers

    def _count(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
        return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)

    def _server_context_length(self, client: httpx.Client) -> int | None:
        """GET /models: proves the server answers; vLLM also says how long a context the model takes."""
        try:
            response = client.get(f"{self.base_url}/models")
        except httpx.TransportError as error:
            raise _Retryable(self._transport_reason(error), unreachable=True) from None
        if response.status_code in (401, 403, 429) or response.status_code >= 500:
            raise self._status_failure(response)
        if response.status_code != 200:
            return None  # some servers do not list models; generation may still work
        try:
            models = response.json().get("data") or []
        except (ValueError, AttributeError):
            return None
        for model in models:
            if isinstance(model, dict) and model.get("id") == self.served_model:
                length = model.get("max_model_len")
                return length if isinstance(length, int) and length > 0 else None
        names = ", ".join(str(m.get("id")) for m in models if isinstance(m, dict))
        if names:
            log.warning("model server %s lists %s, not %s", self.base_url, names, self.served_model)
        return None

    def _status_failure(self, response: httpx.Response) -> Exception:
        status = response.status_code
        detail = _response_detail(response)
        shown = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
        if status == 429 or status >= 500:
            return _Retryable(shown, unreachable=False, retry_after=_retry_after(response))
        where = f"The model server at {self.base_url}"
        if status in (401, 403):
            return ModelUnavailable(f"{where} refused the API key ({shown}). Check STORYBOT_OPENAI_API_KEY.")
        if status == 404:
            return ModelUnavailable(
                f"{where} has no model {self.served_model!r} or no {self.path} endpoint "
                f"({shown}). Check STORYBOT_OPENAI_MODEL and STORYBOT_OPENAI_ENDPOINT."
            )
        hint = ""
        if self.settings.send_extra_sampling and any(name in detail for name in _EXTRA_SAMPLING_FIELDS):
            hint = " If the server does not take vLLM's extra sampling fields, set STORYBOT_OPENAI_SEND_EXTRA_SAMPLING=false."
        return ModelUnavailable(f"{where} refused the request ({shown}).{hint}")

    def _unavailable(self, failure: _Retryable) -> ModelUnavailable:
        tries = self.settings.retries + 1
        if failure.unreachable:
            return ModelUnavailable(
                f"Cannot reach the model server at {self.base_url}: {failure.reason}. "
                "Check STORYBOT_OPENAI_BASE_URL and that the server is running."
            )
        return ModelUnavailable(
            f"The model server at {self.base_url} failed {tries} time{'s' if tries > 1 else ''} "
            f"({failure.reason}); try again later, or check the server's log."
        )

    def _transport_reason(self, error: httpx.TransportError) -> str:
        if isinstance(error, httpx.ConnectTimeout):
            return f"no connection within {self.settings.connect_timeout_s:g} s"
        if isinstance(error, httpx.ReadTimeout):
            return f"no answer within {self.settings.timeout_s:g} s"
        return _one_line(str(error)) or type(error).__name__


class _StreamEnded(Exception):
    """The event stream stopped without [DONE]: an error event, bad data, or an early end."""


def _sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The data of each server-sent event (multi-line data joined by newlines; comments skipped)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _local_tokenizer(name: str) -> Any:
    """The model's tokenizer when it is on this machine (never downloaded); None otherwise."""
    # Looking before loading: importing transformers takes seconds and pulls in torch, which a
    # bot that only talks to a server should not pay for when there is no tokenizer anyway.
    if _tokenizer_files_here(name):
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(name, local_files_only=True)
        except Exception:  # no transformers, or files it cannot load: both mean "estimate"
            log.debug("tokenizer for %s did not load", name, exc_info=True)
    log.info("no local tokenizer for %s; counting tokens as UTF-8 bytes / %d", name, BYTES_PER_TOKEN)
    return None


def _tokenizer_files_here(name: str) -> bool:
    """A folder with tokenizer files, or a hub id whose tokenizer is in the Hugging Face cache."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return any((folder / file).is_file() for file in _TOKENIZER_FILES)
    try:
        from huggingface_hub import try_to_load_from_cache

        return any(isinstance(try_to_load_from_cache(name, file), str) for file in _TOKENIZER_FILES)
    except Exception:  # not a valid hub id (a missing folder), or no huggingface_hub
        return False


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 1] + "…"


def _error_detail(payload: Any) -> str:
    """The message in an OpenAI-style error body ({"error": {"message": ...}} or {"message": ...})."""
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return _one_line(error["message"])
        if isinstance(error, str):
            return _one_line(error)
    return _one_line(json.dumps(payload))


def _response_detail(response: httpx.Response) -> str:
    try:
        return _error_detail(response.json())
    except ValueError:
        return _one_line(response.text)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(max(float(response.headers.get("retry-after", "")), 0.0), _MAX_RETRY_AFTER_S)
    except ValueError:
        return None
