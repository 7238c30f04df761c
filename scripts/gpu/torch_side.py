"""The PyTorch side of the GPU check (scripts/gpu-check.sh): random-initialised LLaMA models of
SmolLM2-135M's and Llama-2-7B's shapes, logits/hidden states on the GPU, DINM with the exact ids
safeedit used, greedy generation speed. Subcommands print or write JSON. Needs torch, transformers,
numpy and a CUDA GPU; downloads nothing."""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

SMALL = dict(  # SmolLM2-135M's config.json
    hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
    tie_word_embeddings=True)
LLAMA2_7B = dict(  # Llama-2-7b-hf's config.json
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-5,
    tie_word_embeddings=False)


# SAFEEDIT_GPU_DRY=1: a dry run of the whole check on the CPU with a shrunken "7B" (to test the
# scripts before spending GPU time).
DRY = os.environ.get("SAFEEDIT_GPU_DRY") == "1"
DEV = "cpu" if DRY else "cuda"
if DRY:
    LLAMA2_7B = dict(LLAMA2_7B, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=4)


def sync():
    if not DRY:
        torch.cuda.synchronize()


def models(args):
    """Writes <out>/smollm2-shape (f32) and <out>/llama2-7b-shape (bf16) with the bundle's tokenizer
    (its vocabulary, 49152 tokens, replaces Llama-2's 32000)."""
    tok = json.load(open(os.path.join(args.tokenizer, "tokenizer_config.json")))
    vocab = len(json.load(open(os.path.join(args.tokenizer, "tokenizer.json")))["model"]["vocab"])
    added = json.load(open(os.path.join(args.tokenizer, "tokenizer.json"))).get("added_tokens", [])
    vocab = max([vocab] + [t["id"] + 1 for t in added])
    ids = {t["content"]: t["id"] for t in added}
    eos = ids.get(tok.get("eos_token"), 0)
    report = {}
    for name, shape, dtype in (("smollm2-shape", SMALL, torch.float32),
                               ("llama2-7b-shape", LLAMA2_7B, torch.bfloat16)):
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        config = LlamaConfig(vocab_size=vocab, bos_token_id=ids.get(tok.get("bos_token"), eos),
                             eos_token_id=eos, pad_token_id=eos, **shape)
        torch.manual_seed(0)
        torch.set_default_dtype(dtype)
        with torch.device(DEV):
            model = LlamaForCausalLM(config)
        torch.set_default_dtype(torch.float32)
        folder = os.path.join(args.out, name)
        model.save_pretrained(folder, max_shard_size="100GB")
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(args.tokenizer, f), folder)
        del model
        if not DRY:
            torch.cuda.empty_cache()
        report[name] = {"dtype": str(dtype), "seconds": time.perf_counter() - t0,
                        "parameters": None}
    print(json.dumps(report))


def load(folder, dtype=torch.float32):
    model = LlamaForCausalLM.from_pretrained(folder, dtype=dtype).to(DEV)
    model.eval()
    return model


def logits(args):
    """Logits and hidden states of one unpadded row, f32 on the GPU, written as safeedit's
    `bench logits` writes them."""
    model = load(args.model)
    ids = torch.tensor([[int(i) for i in args.ids.split(",")]], device=DEV)
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    os.makedirs(args.out, exist_ok=True)
    out.logits[0].float().cpu().numpy().astype("<f4").tofile(os.path.join(args.out, "logits.f32"))
    np.concatenate([h[0].float().cpu().numpy().ravel() for h in out.hidden_states]).astype(
        "<f4").tofile(os.path.join(args.out, "hidden.f32"))


def compare(args):
    """Relative errors between two `logits` folders (max |a-b| / max |b|, and the Frobenius
    ratio), per hidden state and for the logits; argmax agreement per position."""
    meta = json.load(open(os.path.join(args.a, "meta.json")))
    seq, vocab, d, layers = meta["seq"], meta["vocab"], meta["d_model"], meta["n_layers"]
    read = lambda folder, name: np.fromfile(os.path.join(folder, name), dtype="<f4")
    la, lb = (read(f, "logits.f32").reshape(seq, vocab) for f in (args.a, args.b))
    ha, hb = (read(f, "hidden.f32").reshape(layers + 1, seq, d) for f in (args.a, args.b))

    def rel(x, y):
        x, y = x.astype(np.float64), y.astype(np.float64)
        return {"max_abs_over_max": float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-30)),
                "frobenius": float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))}

    per_layer = [rel(ha[i], hb[i]) for i in range(layers + 1)]
    print(json.dumps({
        "a": args.a_name, "b": args.b_name, "seq": seq,
        "logits": rel(la, lb),
        "argmax_agreement": float((la.argmax(-1) == lb.argmax(-1)).mean()),
        "hidden_worst_frobenius": max(p["frobenius"] for p in per_layer),
        "hidden_last_frobenius": per_layer[-1]["frobenius"],
        "hidden_per_layer_frobenius": [p["frobenius"] for p in per_layer],
    }))


def dinm(model, ours, pair, repeat):
    """DINM (locate + edit) on the GPU with the token ids, layer and settings safeedit used
    (its `bench edit` report): seconds and per-step losses."""
    preset = ours["preset"]
    row = ours["instances"][0]
    tokens, layer = row["tokens"], row["layer"]
    edit_ids, labels = tokens["edit_input"], tokens["labels"]
    cons_ids, n_answer = tokens["constraint_input"], tokens["constraint_positions"]
    w = model.model.layers[layer].mlp.down_proj.weight
    for p in model.parameters():
        p.requires_grad_(False)
    runs = []
    for _ in range(repeat):
        w0 = w.detach().clone()
        w.requires_grad_(True)
        sync()
        t0 = time.perf_counter()
        # Location: the safe and unsafe generations right-padded in one batch (masked).
        a, b = pair
        n = max(len(a), len(b))
        batch = torch.tensor([a + [0] * (n - len(a)), b + [0] * (n - len(b))], device=DEV)
        mask = torch.tensor([[1] * len(a) + [0] * (n - len(a)), [1] * len(b) + [0] * (n - len(b))],
                            device=DEV)
        with torch.no_grad():
            hs = model(batch, attention_mask=mask, output_hidden_states=True).hidden_states
            dist = torch.stack([torch.norm(h[0] - h[1]) for h in hs[1:]]).cpu()
        sync()
        t1 = time.perf_counter()
        x_t = torch.tensor([edit_ids], device=DEV)
        c_t = torch.tensor([cons_ids], device=DEV)
        label_t = torch.tensor(labels, device=DEV)
        t = len(labels)
        with torch.no_grad():
            base = torch.log_softmax(model(c_t).logits[0, -n_answer:].float(), -1)
        opt = torch.optim.Adam([w], lr=preset["lr"], weight_decay=preset["weight_decay"])
        steps = []
        for it in range(preset["num_steps"]):
            opt.zero_grad()
            lg = model(x_t).logits[0, :-1][-t:].float()
            nll = -torch.log_softmax(lg, -1).gather(1, label_t[:, None]).mean()
            if preset["constraint_has_grad"]:
                post = torch.log_softmax(model(c_t).logits[0, -n_answer:].float(), -1)
            else:
                with torch.no_grad():
                    post = torch.log_softmax(model(c_t).logits[0, -n_answer:].float(), -1)
            kl = (base.exp() * (base - post)).sum(-1).mean()
            loss = preset["kl_factor"] * nll + kl
            value = float(loss)
            steps.append({"loss": value, "edit": float(nll), "constraint": float(kl)})
            if value < preset["early_stop_loss"]:
                break
            loss.backward()
            opt.step()
            if preset.get("norm_constraint") is not None:
                eps = preset["norm_constraint"]
                with torch.no_grad():
                    w.copy_(torch.min(torch.max(w, w0 - eps), w0 + eps))
        sync()
        t2 = time.perf_counter()
        with torch.no_grad():
            w.copy_(w0)
        w.requires_grad_(False)
        w.grad = None
        runs.append({"locate_s": t1 - t0, "tune_s": t2 - t1, "steps": steps,
                     "located_layer": int(dist.argmax())})
    return runs


def generate(model, ids, new_tokens, repeat):
    """Prefill and greedy decoding speed (no stop token), as `safeedit bench generate`."""
    x = torch.tensor([ids], device=DEV)
    runs = []
    with torch.inference_mode():
        for i in range(repeat + 1):
            sync()
            t0 = time.perf_counter()
            model(x, logits_to_keep=1)
            sync()
            t1 = time.perf_counter()
            out = model.generate(x, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, pad_token_id=0)
            sync()
            t2 = time.perf_counter()
            assert out.shape[1] - x.shape[1] == new_tokens
            if i > 0:
                runs.append({"prefill_s": t1 - t0, "decode_s": max((t2 - t1) - (t1 - t0), 1e-9)})
    n = len(ids)
    return {"prompt_tokens": n, "new_tokens": new_tokens,
            "prefill_tokens_per_s": statistics.median(n / r["prefill_s"] for r in runs),
            "decode_tokens_per_s": statistics.median((new_tokens - 1) / r["decode_s"] for r in runs),
            "runs": runs}


def bench(args):
    """On one model: generation speed, then (with --ours) DINM; peak GPU memory allocated."""
    t0 = time.perf_counter()
    model = load(args.model, getattr(torch, args.dtype))
    report = {"torch": torch.__version__,
              "device": "cpu (dry run)" if DRY else torch.cuda.get_device_name(),
              "dtype": args.dtype, "load_s": time.perf_counter() - t0}
    ids = [int(i) for i in args.ids.split(",")]
    report["generate"] = generate(model, ids, args.new_tokens, args.repeat)
    if args.ours:
        if not DRY:
            torch.cuda.reset_peak_memory_stats()
        from transformers import AutoTokenizer
        ours = json.load(open(args.ours))
        tok = AutoTokenizer.from_pretrained(args.model)
        record = next(r for r in json.load(open(args.data))
                      if r["id"] == ours["instances"][0]["instance"])
        pair = [tok(record[k], add_special_tokens=False)["input_ids"]
                for k in ("safe generation", "unsafe generation")]
        report["dinm"] = dinm(model, ours, pair, args.repeat)
        if not DRY:
            report["dinm_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(report))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("models"); p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True); p.add_argument("--only", nargs="*")
    p = sub.add_parser("logits"); p.add_argument("--model", required=True)
    p.add_argument("--ids", required=True); p.add_argument("--out", required=True)
    p = sub.add_parser("compare"); p.add_argument("a"); p.add_argument("b")
    p.add_argument("--a-name", default="a"); p.add_argument("--b-name", default="b")
    p = sub.add_parser("bench"); p.add_argument("--model", required=True)
    p.add_argument("--ids", required=True); p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeat", type=int, default=2); p.add_argument("--ours")
    p.add_argument("--data", help="the SafeEdit records of --ours' instance")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    {"models": models, "logits": logits, "compare": compare, "bench": bench}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
