"""Make a model folder offline, run by the vLLM venv's interpreter (it has transformers,
tokenizers, safetensors and torch):

    python tiny_model.py tiny DIR        a tiny Llama vLLM can serve on CPU: random weights, a BPE
                                         tokenizer trained on a few sentences, a chat template
    python tiny_model.py config DIR JSON a folder with only config.json (vLLM's config checks
                                         need no weights)

The tiny Llama: hidden 128, 2 layers, 4 heads of 32 (vLLM's CPU attention takes head sizes 32,
64, 80, ... only), 2 KV heads, vocab 512, 32768 positions (so any rendered --max-model-len
of the examples fits, as it does the real model); bfloat16, so its KV cache takes
2 (K and V) x 2 layers x 2 KV heads x 32 x 2 bytes = 512 bytes per token (TINY_PROFILE).

Its replies are short sentences, never empty, as a chat model's are (random weights give every
token ~1/512: one reply in 500 would be empty, the rest would run to the context's end). Its
attention and MLP outputs are zero, so the next token depends on the current one only (the
attention still runs and fills the KV cache, as a real model's does), and the weights make that a
simple chain: words of the tokenizer are likely, a token that ends a sentence (".", "?", ...) is
one in ten or so, the end of the reply about even odds right after one and practically never
anywhere else, so a reply is a sentence or two (2-40 tokens, a median of about 7). The chat template's tokens are never produced. (A
`max_new_tokens` in generation_config.json would not do: vLLM 0.11 caps every request's max_tokens
with it.)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SENTENCES = [
    "Hello, how can I help you today?",
    "I would like to book a table for two at seven.",
    "The weather is sunny and the train leaves at noon.",
    "Thank you for calling, have a nice day.",
] * 50
#: What `voxplane capacity` needs to know of the tiny model (voxplane.manifest.model.ModelProfile's fields).
TINY_PROFILE = {"params_billion": 0.0005, "layers": 2, "kv_heads": 2, "head_dim": 32, "weight_bits": 16}


def tiny(folder: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    bpe.train_from_iterator(SENTENCES, trainers.BpeTrainer(vocab_size=512, special_tokens=special,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=512, max_position_embeddings=32768,
                         bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    texts = {i: tok.decode([i]) for i in tok.get_vocab().values()}
    _next_token_chain(model, sentence_ends=[i for i, t in texts.items() if t.endswith((".", "?", "!"))],
                      words=[i for i, t in texts.items() if re.fullmatch(r" ?[A-Za-z]{2,}", t)],
                      eos=config.eos_token_id, special=[tok.convert_tokens_to_ids(t) for t in special])
    model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)


def _next_token_chain(model: object, *, sentence_ends: list[int], words: list[int], eos: int, special: list[int]) -> None:
    """Weights under which the next token depends on the current one only (see the docstring).
    Hidden dimension 0 says "the current token ends a sentence" (+A, else -A), dimension 1 is a
    constant (+B); the output rows read them: the end of the reply on dimension 0, words, sentence
    ends and the special tokens on dimension 1; the other 126 dimensions are random (logits
    ~N(0, 1)), so which word follows which is the random part."""
    import math

    import torch

    a = b = 4.0
    h = a / math.sqrt((a * a + b * b + 126) / 128)  # dimensions 0 and 1 after the final RMS norm
    with torch.no_grad():
        for layer in model.model.layers:  # type: ignore[attr-defined]
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight  # type: ignore[attr-defined]
        embed.normal_(0.0, 1.0)
        embed[:, 0] = -a
        embed[sentence_ends, 0] = a
        embed[:, 1] = b
        head.normal_(0.0, 0.1)
        head[:, :2] = 0.0
        head[eos, 0] = 7.0 / h  # logit +7 after a sentence end (about even odds), -7 elsewhere
        head[words, 1] = math.log(20.0) / h  # words outweigh stray bytes and punctuation
        head[sentence_ends, 1] = math.log(60 / len(sentence_ends)) / h + math.log(20.0) / h  # ~1 in 10
        head[[i for i in special if i != eos], 1] = -12.0 / h  # never produced


def config_only(folder: Path, config: dict[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))


if __name__ == "__main__":
    what, dest = sys.argv[1], Path(sys.argv[2])
    if what == "tiny":
        tiny(dest)
    else:
        config_only(dest, json.loads(sys.argv[3]))
