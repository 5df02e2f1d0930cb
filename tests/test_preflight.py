"""Memory preflight: the estimate's terms, fits / does not fit, and the way forward."""

from __future__ import annotations

import pytest

from gekro_ft.train.preflight import GiB, Settings, estimate, model_shape, suggestions, unpackable_layers


@pytest.fixture(scope="module")
def smollm2_shape():
    from transformers import AutoConfig

    from gekro_ft.models import bundled_model_dir

    return model_shape(AutoConfig.from_pretrained(bundled_model_dir("smollm2-135m-instruct")))


def settings(**kw) -> Settings:
    base = dict(batch_size=8, seq_len=256, load_in_4bit=True, dtype="float32", lora_r=16,
                target_modules="all-linear", optimizer="adamw_torch", gradient_checkpointing=False)
    return Settings(**{**base, **kw})


def test_shape_of_the_bundled_model(smollm2_shape):
    s = smollm2_shape
    assert (s.hidden, s.layers, s.vocab, s.intermediate) == (576, 30, 49152, 1536)
    assert len(s.linear) == 30 * 7  # q k v o gate up down per layer; the tied head is not a separate linear
    total = sum(i * o for i, o in s.linear.values()) + s.other_params
    assert total == 134_515_008  # what transformers counts for SmolLM2-135M


def test_lora_parameter_count_matches_peft(smollm2_shape):
    # PEFT reports 4,884,480 trainable parameters for r=16 on all-linear (seen in the real run)
    est = estimate(smollm2_shape, settings(), None, "cpu")
    assert est.parts["lora"] == 4_884_480 * 4
    attention_only = estimate(smollm2_shape, settings(target_modules=["q_proj", "v_proj"]), None, "cpu")
    assert attention_only.parts["lora"] < est.parts["lora"] / 4


def test_each_knob_moves_the_right_term(smollm2_shape):
    base = estimate(smollm2_shape, settings(), None, "cpu").parts
    ckpt = estimate(smollm2_shape, settings(gradient_checkpointing=True), None, "cpu").parts
    full = estimate(smollm2_shape, settings(load_in_4bit=False), None, "cpu").parts
    eight_bit = estimate(smollm2_shape, settings(optimizer="adamw_8bit"), None, "cpu").parts
    assert ckpt["activations"] < base["activations"] / 5
    assert full["weights"] > 3 * base["weights"]
    assert eight_bit["optimizer"] == base["optimizer"] / 4
    double = estimate(smollm2_shape, settings(batch_size=16), None, "cpu").parts
    assert double["logits"] == 2 * base["logits"] and double["activations"] == 2 * base["activations"]


def test_fits_and_does_not_fit_with_a_way_forward(smollm2_shape):
    s = settings(batch_size=8, seq_len=1024)  # ~15 GiB without gradient checkpointing
    roomy = estimate(smollm2_shape, s, 64 * GiB, "cpu")
    assert roomy.fits
    tight = estimate(smollm2_shape, s, 12 * GiB, "cpu")
    assert not tight.fits and "GiB free" in tight.describe()
    tips = suggestions(smollm2_shape, s, 12 * GiB, "cpu")
    assert tips and tips[0].startswith("train.gradient_checkpointing=true")
    hopeless = suggestions(smollm2_shape, s, int(0.5 * GiB), "cpu")
    assert hopeless == []


def test_packing_is_refused_for_layers_that_ignore_the_per_row_mask():
    from transformers import Gemma3TextConfig, LlamaConfig, MambaConfig, Qwen3NextConfig

    assert unpackable_layers(LlamaConfig()) == []
    assert unpackable_layers(Gemma3TextConfig()) == []  # sliding-window attention is masked per row too
    assert unpackable_layers(Qwen3NextConfig()) == ["linear_attention"]
    assert unpackable_layers(MambaConfig()) == ["recurrent"]
