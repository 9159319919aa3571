"""Held-out perplexity: windows, the float64 sum against an independent loop, batching, sanity models,
and SmolLM2 on Pride & Prejudice."""

import math
import socket
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ptqtheory.models import corpus, smollm2
from ptqtheory.models.perplexity import Perplexity, expects_bos, perplexity, text_windows, token_windows

V = 97


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(config).eval()


def _ids(n, seed=1):
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _reference(model, windows):
    """Independent: one window at a time, log_softmax in float64 of each position's logits, a python sum."""
    total, count = 0.0, 0
    with torch.no_grad():
        for window in windows:
            logits = model(input_ids=window[None]).logits[0]
            for t in range(1, len(window)):
                total += -float(torch.log_softmax(logits[t - 1].double(), dim=-1)[window[t]])
                count += 1
    return total / count, count


@pytest.mark.parametrize("bos", [None, 1])
def test_equals_an_independent_computation(tiny, bos):
    windows = token_windows(_ids(300), 16, bos)
    got = perplexity(tiny, windows, batch_size=1)
    nll, count = _reference(tiny, windows)
    assert got.tokens == count == windows.shape[0] * 15 and got.windows == windows.shape[0]
    assert got.nll == pytest.approx(nll, rel=1e-12)
    assert got.ppl == pytest.approx(math.exp(nll), rel=1e-12)


def test_batching_does_not_change_the_result(tiny):
    windows = token_windows(_ids(400), 20, None)
    one, three = perplexity(tiny, windows, batch_size=1), perplexity(tiny, windows, batch_size=3)
    # Bit-for-bit equal here; a BLAS may block float32 matmuls differently by batch size, hence a tolerance.
    assert three.nll == pytest.approx(one.nll, rel=1e-6) and three.tokens == one.tokens
    assert perplexity(tiny, windows, batch_size=100) == perplexity(tiny, windows, batch_size=100)


def test_windows_do_not_overlap_and_cover_the_text():
    ids = list(range(1000, 1105))  # 105 distinct tokens
    plain = token_windows(ids, 10, None)
    assert plain.dtype == torch.long and plain.shape == (10, 10)
    assert plain.flatten().tolist() == ids[:100]  # consecutive, disjoint, remainder of 5 dropped
    with_bos = token_windows(ids, 10, 7)
    assert with_bos.shape == (11, 10) and (with_bos[:, 0] == 7).all()
    assert with_bos[:, 1:].flatten().tolist() == ids[:99]  # BOS + 9 text tokens each
    assert token_windows(ids, 10, None, max_windows=3).tolist() == plain[:3].tolist()
    assert token_windows(torch.tensor(ids), 10, None).equal(plain)


@pytest.mark.parametrize("args, message", [
    ((list(range(20)), 1, None), "seq_len must be an integer >= 2"),
    ((list(range(20)), 2.0, None), "seq_len"),
    ((list(range(20)), 8, -1), "bos_id"),
    ((list(range(5)), 8, None), "5 tokens.*needs 8.*longer text or a smaller seq_len"),
    ((list(range(6)), 8, 0), "6 tokens.*needs 7 text tokens after BOS"),
    (([0.5, 1.0], 2, None), "int token ids"),
    (([1, -2, 3], 2, None), "non-negative"),
    ((torch.zeros(2, 4, dtype=torch.long), 2, None), "1-D"),
    (("some text", 2, None), "token ids"),
])
def test_window_arguments_are_checked(args, message):
    with pytest.raises(ValueError, match=message):
        token_windows(*args)


class _Oracle(torch.nn.Module):
    """Logits putting all mass on (token + 1) mod V: a perfect predictor of a counting sequence."""

    def __init__(self, uniform=False):
        super().__init__()
        self.embed = torch.nn.Embedding(V, 1)
        self.uniform = uniform

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, use_cache=None):
        if self.uniform:
            return SimpleNamespace(logits=torch.zeros(*input_ids.shape, V))
        return SimpleNamespace(logits=torch.nn.functional.one_hot((input_ids + 1) % V, V).float() * 100.0)


def test_perfect_and_uniform_predictors():
    windows = token_windows([i % V for i in range(500)], 25, None)
    perfect = perplexity(_Oracle(), windows)
    assert perfect.ppl == pytest.approx(1.0, abs=1e-12) and perfect.tokens == 20 * 24
    assert perplexity(_Oracle(uniform=True), windows).ppl == pytest.approx(V, rel=1e-12)


def test_progress_and_argument_checks(tiny):
    windows = token_windows(_ids(200), 10, None)
    seen = []
    perplexity(tiny, windows, batch_size=8, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(8, 20), (16, 20), (20, 20)]
    with pytest.raises(ValueError, match="batch_size"):
        perplexity(tiny, windows, batch_size=0)
    with pytest.raises(ValueError, match="shape"):
        perplexity(tiny, windows[:, :1])
    with pytest.raises(ValueError, match="vocabulary has 97"):
        perplexity(tiny, windows + V)
    with pytest.raises(ValueError, match="integer"):
        perplexity(tiny, windows.float())
    with pytest.raises(ValueError, match=r"model\.to"):
        perplexity(tiny, windows, device="meta")


def test_expects_bos_follows_the_tokenizer():
    def fake(bos, prepends):
        def tok(text):
            return {"input_ids": ([bos] if prepends else []) + [5]}
        tok.bos_token_id = bos
        return tok
    assert expects_bos(fake(1, True)) == 1
    assert expects_bos(fake(1, False)) is None
    assert expects_bos(fake(None, False)) is None


def _no_network(*args, **kwargs):
    raise AssertionError("network access attempted")


def test_smollm2_perplexity_on_pride_and_prejudice(monkeypatch):
    # Measured 21.76 (4 windows of 256 tokens, no BOS; torch 2.13 CPU, transformers 5.25):
    #   python -c "from ptqtheory.models import smollm2, corpus, perplexity as P; m, t = smollm2.load();
    #   print(P.perplexity(m, P.text_windows(t, corpus.calibration_and_evaluation().evaluation, 256, 4)))"
    monkeypatch.setattr(socket.socket, "connect", _no_network)  # load (and convert, if first) offline
    monkeypatch.setattr(socket, "create_connection", _no_network)
    try:
        model, tokenizer = smollm2.load()
    except smollm2.ModelMissingError as exc:
        pytest.fail(f"CI installs the SmolLM2 package; {exc}")
    assert expects_bos(tokenizer) is None  # SmolLM2 is trained without BOS (see expects_bos)
    split = corpus.calibration_and_evaluation()
    assert not split.fallback, split.source
    windows = text_windows(tokenizer, split.evaluation, 256, max_windows=4)
    result = perplexity(model, windows)
    assert isinstance(result, Perplexity) and result.tokens == 4 * 255
    assert 3 < result.ppl < 60, result
