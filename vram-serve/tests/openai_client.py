"""The `openai` Python client, unchanged, against vram-serve.

Run by tests/openai_client.rs, which starts the servers and passes their
addresses: VRAM_SERVE_EMBED_URL / VRAM_SERVE_EMBED_MODEL (the vram-serve
binary on a tiny BERT snapshot) and VRAM_SERVE_TEXT_URL /
VRAM_SERVE_TEXT_MODEL (the same HTTP layer over a test engine that emits
"Hello", ",", " world", "!"). Runs under pytest, or alone as a script.
"""

import os

import openai

EMBED_URL = os.environ["VRAM_SERVE_EMBED_URL"]
EMBED_MODEL = os.environ["VRAM_SERVE_EMBED_MODEL"]
TEXT_URL = os.environ["VRAM_SERVE_TEXT_URL"]
TEXT_MODEL = os.environ["VRAM_SERVE_TEXT_MODEL"]


def client(url):
    return openai.OpenAI(base_url=url, api_key="not-checked", max_retries=0, timeout=60)


class expect:
    """`with expect(openai.NotFoundError) as e:` (pytest.raises, without pytest)."""

    def __init__(self, kind):
        self.kind = kind
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        assert kind is not None, f"no {self.kind.__name__} raised"
        assert issubclass(kind, self.kind), f"{kind.__name__} raised, not {self.kind.__name__}: {value}"
        self.value = value
        return True


def test_models_lists_the_served_model():
    assert [m.id for m in client(EMBED_URL).models.list()] == [EMBED_MODEL]
    assert [m.id for m in client(TEXT_URL).models.list()] == [TEXT_MODEL]


def test_embeddings_as_floats_and_as_the_clients_default_base64():
    c = client(EMBED_URL)
    r = c.embeddings.create(model=EMBED_MODEL, input=["hello world", "a dog"], encoding_format="float")
    assert [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) == 32
    assert r.model == EMBED_MODEL
    assert r.usage.prompt_tokens == r.usage.total_tokens > 0
    # Without encoding_format the client asks for base64 and decodes it.
    d = c.embeddings.create(model=EMBED_MODEL, input="hello world")
    assert len(d.data[0].embedding) == 32
    assert max(abs(a - b) for a, b in zip(d.data[0].embedding, r.data[0].embedding)) < 1e-6
    norm = sum(x * x for x in d.data[0].embedding) ** 0.5
    assert abs(norm - 1.0) < 1e-5


def test_errors_raise_the_clients_exceptions():
    c = client(EMBED_URL)
    with expect(openai.NotFoundError) as e:
        c.embeddings.create(model="someone/else", input="x")
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"
    with expect(openai.BadRequestError) as e:
        c.embeddings.create(model=EMBED_MODEL, input="")
    assert e.value.param == "input"
    with expect(openai.BadRequestError) as e:
        client(TEXT_URL).completions.create(model=TEXT_MODEL, prompt="FAIL:too-long")
    assert e.value.code == "context_length_exceeded"


def test_a_completion():
    r = client(TEXT_URL).completions.create(model=TEXT_MODEL, prompt="Say hi", max_tokens=3, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text == "Hello, world"
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3


def test_a_chat_completion():
    r = client(TEXT_URL).chat.completions.create(
        model=TEXT_MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=10,
        seed=1,
        stop=["\n"],
    )
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "Hello, world!"
    assert r.choices[0].finish_reason == "stop"


def test_a_streamed_chat_with_usage():
    stream = client(TEXT_URL).chat.completions.create(
        model=TEXT_MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    assert "".join(parts) == "Hello, world!"
    assert finish == "stop"
    assert usage.completion_tokens == 4


def test_a_streamed_completion():
    stream = client(TEXT_URL).completions.create(model=TEXT_MODEL, prompt="Say hi", stream=True, max_tokens=2)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == "Hello,"
    assert chunks[-1].choices[0].finish_reason == "length"


if __name__ == "__main__":
    for name, test in sorted(globals().items()):
        if name.startswith("test_") and callable(test):
            test()
            print(f"{name} passed")
