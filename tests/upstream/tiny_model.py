"""Make a model folder offline, run by the vLLM venv's interpreter (it has transformers,
tokenizers, safetensors and torch):

    python tiny_model.py tiny DIR        a tiny Llama vLLM can serve on CPU: random weights, a BPE
                                         tokenizer trained on a few sentences, a chat template
    python tiny_model.py config DIR JSON a folder with only config.json (vLLM's config checks
                                         need no weights)

The tiny Llama: hidden 128, 2 layers, 4 heads of 32 (vLLM's CPU attention takes head sizes 32,
64, 80, ... only), 2 KV heads, vocab 512, 32768 positions (so any rendered --max-model-len
of the examples fits, as it does the real model).
"""

from __future__ import annotations

import json
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
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)


def config_only(folder: Path, config: dict[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))


if __name__ == "__main__":
    what, dest = sys.argv[1], Path(sys.argv[2])
    if what == "tiny":
        tiny(dest)
    else:
        config_only(dest, json.loads(sys.argv[3]))
