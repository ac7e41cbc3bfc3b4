"""Writes reference data from the real Hugging Face stack (sentencepiece, tokenizers, transformers, PyTorch) for
the tests that cover SentencePiece tokenizers and Qwen2 models. Not run by the tests or CI: it was run once on a
machine that has those Python packages, and its output is committed under test/fixtures/ (see the README there).

Usage: python3 scripts/oracles/make_hf_oracles.py <out-dir>
Reads test/fixtures/eval.txt and test/fixtures/micro-llama/tokenizer.json from the repository.

Writes:
  spm-llama/       a SentencePiece BPE tokenizer (byte fallback, Llama-2 settings) trained on eval.txt: tokenizer.model,
                   tokenizer.json as transformers converts it (legacy Llama style) plus a tiny random LlamaForCausalLM
                   (bf16 safetensors, config.json) using it. With transformers 5.17 the converted tokenizer.json came
                   out with an empty vocabulary, so test/fixtures keeps tokenizer.model only.
  spm-llama-oracle.json   ids from sentencepiece itself (and from the tokenizer.json, empty with transformers 5.17) for probe strings
  qwen2-tiny/      a tiny random Qwen2ForCausalLM (q/k/v biases, rope_theta 1e6) with micro-llama's byte-level BPE
  qwen2-tiny-oracle.json  PyTorch fp32 logits on probe ids and perplexity over windows of eval.txt
"""
import json
import os
import shutil
import sys

import sentencepiece as spm
import torch
import transformers
from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVAL = os.path.join(REPO, 'test', 'fixtures', 'eval.txt')
MICRO_TOKENIZER = os.path.join(REPO, 'test', 'fixtures', 'micro-llama', 'tokenizer.json')

PROBES = [
    'Hello world',
    'The quick brown fox jumps over the lazy dog.',
    '  two leading spaces and  double  spaces',
    'trailing space ',
    'numbers 12345 and 3.14159, 2026-11-23',
    'unicode: café naïve – “quotes” — ellipsis…',
    'emoji 🙂 and CJK 漢字 and Cyrillic привет',
    'new\nlines\n\nand\ttabs',
    '',
    ' ',
    '▁already▁has▁meta',
    '<s> not a special token </s>',
]


def train_spm(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, 'tokenizer')
    # Llama 2's trainer settings (from its tokenizer.model's trainer_spec), scaled down.
    spm.SentencePieceTrainer.train(
        input=EVAL, model_prefix=prefix, vocab_size=640, model_type='bpe', byte_fallback=True,
        character_coverage=0.99995, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name='identity', add_dummy_prefix=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=4, minloglevel=2,
        max_sentence_length=1 << 20, split_by_whitespace=True)
    os.remove(prefix + '.vocab')


def convert_tokenizer(folder: str) -> str:
    """tokenizer.json via transformers' own slow->fast converter, as HF Llama-2 repos ship it."""
    model_file = os.path.join(folder, 'tokenizer.model')
    cls = getattr(transformers, 'LlamaTokenizerFast', None) or transformers.LlamaTokenizer
    tok = cls(vocab_file=model_file, legacy=True, add_bos_token=True, add_eos_token=False)
    tmp = os.path.join(folder, '_hf')
    tok.save_pretrained(tmp)
    shutil.copy(os.path.join(tmp, 'tokenizer.json'), os.path.join(folder, 'tokenizer.json'))
    for extra in ('tokenizer_config.json', 'special_tokens_map.json'):
        if os.path.exists(os.path.join(tmp, extra)):
            shutil.copy(os.path.join(tmp, extra), os.path.join(folder, extra))
    shutil.rmtree(tmp)
    return cls.__name__


def tiny_llama_for(folder: str, vocab: int) -> None:
    torch.manual_seed(7)
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)


def spm_oracle(folder: str, converter: str) -> dict:
    sp = spm.SentencePieceProcessor(model_file=os.path.join(folder, 'tokenizer.model'))
    fast = Tokenizer.from_file(os.path.join(folder, 'tokenizer.json'))
    with open(EVAL, encoding='utf-8') as f:
        head = f.read(4000)
    probes = PROBES + [head]
    rows = []
    for text in probes:
        rows.append({
            'text': text,
            'sentencepiece': sp.encode(text),
            'tokenizers_with_special': fast.encode(text, add_special_tokens=True).ids,
            'tokenizers': fast.encode(text, add_special_tokens=False).ids,
            'pieces': sp.encode(text, out_type=str),
        })
    return {
        'how': f'sentencepiece {spm.__version__} trained on test/fixtures/eval.txt (BPE, byte_fallback, Llama-2 trainer settings, vocab 640); '
               f'tokenizer.json by transformers {transformers.__version__} {converter}(legacy=True); ids from sentencepiece.encode '
               f'and from tokenizers {__import__("tokenizers").__version__} Tokenizer.encode',
        'vocab_size': sp.get_piece_size(),
        'scores_first': [sp.get_score(i) for i in range(16)],
        'probes': rows,
    }


def qwen2(folder: str) -> dict:
    tok = Tokenizer.from_file(MICRO_TOKENIZER)
    vocab = tok.get_vocab_size()
    torch.manual_seed(11)
    config = transformers.Qwen2Config(
        vocab_size=vocab, hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, rope_theta=1000000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=1, use_sliding_window=False)
    model = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('.bias'):
                p.normal_(0.0, 0.5)  # make the biases matter, so a loader that drops them fails the test
            elif 'norm' in name:
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0.0, 0.08)
    model = model.to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(MICRO_TOKENIZER, os.path.join(folder, 'tokenizer.json'))
    ref = model.to(torch.float32).eval()
    with open(EVAL, encoding='utf-8') as f:
        ids = tok.encode(f.read(), add_special_tokens=False).ids
    probe = ids[:32]
    with torch.no_grad():
        logits = ref(torch.tensor([probe])).logits[0]
        nll, count = 0.0, 0
        ctx, windows = 128, 8
        for w in range(windows):
            chunk = torch.tensor([ids[w * ctx:(w + 1) * ctx]])
            out = ref(chunk).logits[0, :-1]
            nll += torch.nn.functional.cross_entropy(out, chunk[0, 1:], reduction='sum').item()
            count += ctx - 1
    return {
        'how': f'PyTorch {torch.__version__} fp32 forward of the bf16 checkpoint (transformers {transformers.__version__} '
               'Qwen2ForCausalLM); eval text test/fixtures/eval.txt tokenized with tokenizer.json, no BOS; 8 windows of 128 tokens from token 0; '
               'ppl = exp(mean next-token loss over all 127 positions of each window)',
        'ppl_fp32': float(torch.exp(torch.tensor(nll / count))),
        'ctx': ctx,
        'windows': windows,
        'probe_ids': probe,
        'probe_last_logits': logits[-1].tolist(),
        'probe_first8_logits': [row[:8].tolist() for row in logits],
        'probe_argmax': logits.argmax(-1).tolist(),
    }


def main() -> None:
    out = sys.argv[1]
    spm_dir = os.path.join(out, 'spm-llama')
    train_spm(spm_dir)
    converter = convert_tokenizer(spm_dir)
    tiny_llama_for(spm_dir, spm.SentencePieceProcessor(model_file=os.path.join(spm_dir, 'tokenizer.model')).get_piece_size())
    with open(os.path.join(out, 'spm-llama-oracle.json'), 'w', encoding='utf-8') as f:
        json.dump(spm_oracle(spm_dir, converter), f, ensure_ascii=False, indent=1)
    qwen_dir = os.path.join(out, 'qwen2-tiny')
    oracle = qwen2(qwen_dir)
    with open(os.path.join(out, 'qwen2-tiny-oracle.json'), 'w', encoding='utf-8') as f:
        json.dump(oracle, f, indent=1)
    print('ok', sorted(os.listdir(out)))


if __name__ == '__main__':
    main()
