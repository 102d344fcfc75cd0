"""The vllm backend's pure parts (it needs vLLM and a GPU to run; `gpu` tests run it for real)."""

from __future__ import annotations

import importlib.util

import pytest

from ming.engine.base import GenerationConfig


def test_sampling_kwargs():
    from ming.engine.vllm import sampling_kwargs

    kw = sampling_kwargs(GenerationConfig(temperature=0.7, top_p=0.8, top_k=20, seed=5, stop=("END",)),
                         ("<|im_end|>",), {151645, 151643}, 64)
    assert kw["temperature"] == 0.7 and kw["top_p"] == 0.8 and kw["top_k"] == 20 and kw["seed"] == 5
    assert kw["max_tokens"] == 64 and kw["stop"] == ["<|im_end|>", "END"] and kw["stop_token_ids"] == [151643, 151645]
    greedy = sampling_kwargs(GenerationConfig(temperature=0, top_k=5), (), (), 8)
    assert greedy["temperature"] == 0.0 and greedy["top_k"] == -1 and greedy["top_p"] == 1.0 and "seed" not in greedy


def test_load_without_vllm_says_what_to_do(tiny_qwen_dir):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    from ming.config import ModelOptions
    from ming.engine import create_engine
    from ming.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="pip install"):
        create_engine(ModelOptions(model_path=str(tiny_qwen_dir), backend="vllm", tensor_parallel_size=2))


@pytest.mark.gpu
def test_vllm_engine_streams_on_gpu(tiny_qwen_dir):
    pytest.importorskip("vllm")
    import threading

    from ming.config import ModelOptions
    from ming.engine import create_engine

    eng = create_engine(ModelOptions(model_path=str(tiny_qwen_dir), backend="vllm"))
    try:
        ids = eng.render([{"role": "user", "content": "头痛怎么办"}]).ids
        chunks = list(eng.stream(ids, GenerationConfig(max_new_tokens=8, temperature=0)))
        assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].prompt_tokens == len(ids)
        cancel = threading.Event()
        cancel.set()
        assert list(eng.stream(ids, GenerationConfig(max_new_tokens=200), cancel))[-1].finish_reason == "cancelled"
    finally:
        eng.close()
