#!/usr/bin/env python3
"""Peer benchmark: Hugging Face transformers on the same model folder and prompts as `casspec bench`.

Strategies
  hf-plain  model.generate, greedy (the reference for speedup and identity here)
  hf-pld    model.generate with prompt lookup decoding (prompt_lookup_num_tokens / max_matching_ngram_size)

Protocol (the same as casspec bench, after Spec-Bench): batch 1, greedy, every prompt generates exactly
--max-new-tokens tokens, warm-up generations excluded, torch.cuda.synchronize() before and after each
timed generate() call, each (strategy, prompt) run --repeats times keeping the median time, strategies
interleaved per prompt (prompt-major). Per-prompt tokens/s = new tokens / median seconds (prefill
included); speedup = mean per-prompt tokens/s / hf-plain's mean per-prompt tokens/s (same category).
Prompts are tokenised like casspec (no special tokens; BOS only when tokenizer_config.json says
add_bos_token: true) and cut from the left to fit context - max_new_tokens - 80, like casspec.

EOS handling (--eos):
  ignore    (default) no EOS at all: generation never stops early and EOS is generated like any other
            token, exactly casspec's ignoreEos, so token lists are comparable with casspec's.
  suppress  keep EOS but set min_new_tokens = max_new_tokens: transformers masks EOS until the end
            (lengths match, but where the model prefers EOS the tokens differ from casspec's).

Writes JSON in casspec's bench schema (tool "transformers", reference "hf-plain"), so
`casspec bench ... --peers hf.json` merges it into casspec's table and chart.

  python3 scripts/peers/hf_bench.py --model MODEL_DIR --prompts prompts.jsonl \
      --max-new-tokens 128 --warmup 2 --repeats 1 --json hf.json
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time

TREE_ROOM = 80  # casspec keeps this many context slots free for a draft tree; we cut prompts the same way
ALL = "all"


class PromptError(ValueError):
    pass


def load_prompts(path: str) -> list[dict]:
    """casspec JSONL ({id, category, prompt}) or Spec-Bench ({question_id, category, turns}: turns[0])."""
    out: list[dict] = []
    seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise PromptError(f"cannot read prompts file {path}: {e}") from e
    for i, raw in enumerate(lines, start=1):
        raw = raw.rstrip("\r")
        if not raw.strip():
            continue

        def fail(msg: str):
            raise PromptError(f"{path}:{i}: {msg}")

        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as e:
            fail(f"not valid JSON ({e})")
        if not isinstance(rec, dict):
            fail("each line must be a JSON object")
        pid = rec.get("id", rec.get("question_id"))
        if pid is None:
            fail('missing "id" (or Spec-Bench "question_id")')
        if isinstance(pid, bool) or not isinstance(pid, (str, int, float)):
            fail('"id" must be a string or a number')
        pid = str(pid)
        if pid in seen:
            fail(f'duplicate id "{pid}" (first on line {seen[pid]})')
        seen[pid] = i
        category = rec.get("category", "default")
        if not isinstance(category, str) or not category:
            fail('"category" must be a non-empty string')
        if category == ALL:
            fail(f'category "{ALL}" is reserved for the summary over every prompt')
        if "prompt" in rec:
            prompt = rec["prompt"]
            if not isinstance(prompt, str) and not (
                isinstance(prompt, list) and all(isinstance(t, int) and t >= 0 for t in prompt)
            ):
                fail('"prompt" must be a string (or an array of token ids)')
        elif "turns" in rec:
            turns = rec["turns"]
            if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
                fail('"turns" must be a non-empty array whose first element is a string')
            prompt = turns[0]
        else:
            fail('missing "prompt" (or Spec-Bench "turns")')
        if len(prompt) == 0:
            fail("the prompt is empty")
        out.append({"id": pid, "category": category, "prompt": prompt})
    if not out:
        raise PromptError(f"{path}: no prompts (the file is empty)")
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def summarize(per_prompt: list[dict], strategies: list[str], categories: list[str], reference: str) -> list[dict]:
    """The same summary as casspec's (ts/bench/run.ts summarize)."""
    cats = [ALL] + [c for c in categories if c != ALL]

    def pick(s, c):
        return [r for r in per_prompt if r["strategy"] == s and (c == ALL or r["category"] == c)]

    ref_tps = {c: mean([r["tokensPerSecond"] for r in pick(reference, c)]) for c in cats}
    rows = []
    for s in strategies:
        for c in cats:
            rs = pick(s, c)
            if not rs:
                continue
            tps = mean([r["tokensPerSecond"] for r in rs])
            known = all(r["meanAccepted"] is not None and r["meanAccepted"] > 0 for r in rs)
            steps = sum(r.get("steps") or 0 for r in rs)
            if not known:
                acc = None
            elif steps > 0:
                acc = sum(r["meanAccepted"] * (r.get("steps") or 0) for r in rs) / steps
            else:
                acc = mean([r["meanAccepted"] for r in rs])
            ref = ref_tps[c]
            rows.append(
                {
                    "strategy": s,
                    "category": c,
                    "prompts": len(rs),
                    "tokensPerSecond": round(tps, 4),
                    "speedup": round(tps / ref, 4) if ref > 0 else 0.0,
                    "meanAccepted": None if acc is None else round(acc, 4),
                    "identicalPct": round(100.0 * sum(1 for r in rs if r["identical"]) / len(rs), 4),
                }
            )
    return rows


def format_table(doc: dict) -> str:
    pr = doc["protocol"]
    lines = [
        f"hf_bench: {doc['model']['name']} on {doc['device']['backend']} ({doc['device']['name']}), "
        f"transformers {doc['device']['host'].get('transformers')}, dtype {doc['model']['dtype']}",
        f"greedy, batch 1, {pr['maxNewTokens']} new tokens per prompt (EOS {pr['eos']}), {pr['prompts']} prompts, "
        f"warm-up {pr['warmup']} per strategy (excluded), median of {pr['repeats']}; "
        f"hf-pld: prompt_lookup_num_tokens={pr['pldTokens']}, max_matching_ngram_size={pr['pldNgram']}",
        f"speedup = mean per-prompt tokens/s / {pr['reference']}'s; identical = same token list as {pr['reference']}",
        "",
    ]
    header = ["category", "strategy", "prompts", "tok/s", "speedup", "accepted", "identical"]
    rows = []
    cats = [ALL] + [c for c in dict.fromkeys(r["category"] for r in doc["summary"]) if c != ALL]
    if len(cats) == 2:
        cats = [ALL]
    for c in cats:
        first = True
        for r in doc["summary"]:
            if r["category"] != c:
                continue
            acc = "-" if r["meanAccepted"] is None else f"{r['meanAccepted']:.2f}"
            rows.append(
                [c if first else "", r["strategy"], str(r["prompts"]), f"{r['tokensPerSecond']:.1f}",
                 f"{r['speedup']:.2f}x", acc, f"{r['identicalPct']:.1f}%"]
            )
            first = False
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    right = [False, False, True, True, True, True, True]

    def line(cells):
        return "  ".join(c.rjust(w) if rt else c.ljust(w) for c, w, rt in zip(cells, widths, right)).rstrip()

    lines.append(line(header))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(line(r) for r in rows)
    for n in doc.get("notes", []):
        lines.append(f"note: {n}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face model folder (the one casspec loads)")
    ap.add_argument("--prompts", required=True, help="prompts JSONL (casspec or Spec-Bench format)")
    ap.add_argument("--strategies", default="hf-plain,hf-pld", help="comma-separated: hf-plain (always run), hf-pld")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2, help="warm-up generations per strategy (excluded)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per (strategy, prompt); the median is kept")
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    ap.add_argument("--json", default=None, help="write results as JSON (casspec bench schema)")
    ap.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    ap.add_argument("--dtype", default="match",
                    help="match (default: casspec's GPU storage: float16 checkpoints as float16, everything else "
                         "as bfloat16), auto (the checkpoint's), bfloat16, float16 or float32")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager, ...)")
    ap.add_argument("--allow-cudnn-sdpa", action="store_true",
                    help="keep PyTorch's cuDNN SDPA backend enabled. Off by default: it builds a new plan for every "
                         "new sequence length (~80 ms each on an H100 with torch 2.11), which makes plain decoding "
                         "look ~15x slower than it is and inflates every speedup")
    ap.add_argument("--context", type=int, default=None,
                    help="context length for prompt cutting (default min(max_position_embeddings, 4096), as casspec)")
    ap.add_argument("--eos", choices=["ignore", "suppress"], default="ignore", help="see the module docstring")
    ap.add_argument("--pld-tokens", type=int, default=10, help="prompt_lookup_num_tokens")
    ap.add_argument("--pld-ngram", type=int, default=2, help="max_matching_ngram_size")
    ap.add_argument("--tune-pld", type=int, default=0, metavar="K",
                    help="before the run, pick the fastest (pld tokens, ngram) on the first K prompts "
                         "(grid: tokens 3,5,10,15,20 x ngram 1,2,3); 0 = off")
    ap.add_argument("--progress-every", type=int, default=10)
    args = ap.parse_args(argv)

    try:
        prompts = load_prompts(args.prompts)
    except PromptError as e:
        print(f"hf_bench: {e}", file=sys.stderr)
        return 2
    if args.limit is not None:
        prompts = prompts[: args.limit]
    if args.max_new_tokens < 1 or args.repeats < 1 or args.warmup < 0:
        print("hf_bench: --max-new-tokens and --repeats must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    strategies = ["hf-plain"] + [s for s in dict.fromkeys(x.strip() for x in args.strategies.split(",")) if s and s != "hf-plain"]
    unknown = [s for s in strategies if s not in ("hf-plain", "hf-pld")]
    if unknown:
        print(f"hf_bench: unknown strategies {unknown} (available: hf-plain, hf-pld)", file=sys.stderr)
        return 2

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = device.startswith("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False  # like casspec: no TF32 shortcuts in fp32 math
    torch.backends.cudnn.allow_tf32 = False
    if not args.allow_cudnn_sdpa and hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)

    with open(os.path.join(args.model, "config.json"), encoding="utf-8") as f:
        cfg_json = json.load(f)
    ckpt_dtype = str(cfg_json.get("dtype") or cfg_json.get("torch_dtype") or "float32")
    dtype_name = {
        "match": "float16" if ckpt_dtype == "float16" else "bfloat16",
        "auto": ckpt_dtype,
    }.get(args.dtype, args.dtype)
    if not on_cuda and args.dtype == "match":
        dtype_name = "float32"  # casspec's CPU backend computes in fp32
    dtype = getattr(torch, dtype_name)

    tok = AutoTokenizer.from_pretrained(args.model)
    tok_cfg_path = os.path.join(args.model, "tokenizer_config.json")
    add_bos = False
    if os.path.exists(tok_cfg_path):
        with open(tok_cfg_path, encoding="utf-8") as f:
            add_bos = json.load(f).get("add_bos_token") is True
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation=args.attn)
    except TypeError:  # older transformers: torch_dtype
        model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype, attn_implementation=args.attn)
    model.to(device).eval()

    max_pos = int(cfg_json.get("max_position_embeddings", 4096))
    context = args.context or min(max_pos, 4096)
    limit = context - args.max_new_tokens - TREE_ROOM
    if limit < 1:
        print(f"hf_bench: --max-new-tokens {args.max_new_tokens} leaves no room for a prompt in {context} tokens", file=sys.stderr)
        return 2

    def encode(p) -> list[int]:
        if isinstance(p, list):
            return p
        ids = tok(p, add_special_tokens=False)["input_ids"]
        if add_bos and tok.bos_token_id is not None:
            ids = [tok.bos_token_id] + ids
        return ids

    truncated = []
    ids_list = []
    for p in prompts:
        ids = encode(p["prompt"])
        if len(ids) > limit:
            truncated.append(p["id"])
            ids = ids[-limit:]
        ids_list.append(ids)

    # Count top-level forward calls: steps = calls - 1 (the first call is the prefill).
    calls = {"n": 0}

    def count_hook(_module, _args, _kwargs=None):
        calls["n"] += 1

    try:
        model.register_forward_pre_hook(count_hook, with_kwargs=True)
    except TypeError:
        model.register_forward_pre_hook(lambda m, a: count_hook(m, a))

    base_gc = copy.deepcopy(model.generation_config)
    base_gc.do_sample = False
    base_gc.num_beams = 1
    for k in ("temperature", "top_p", "top_k"):
        if hasattr(base_gc, k):
            setattr(base_gc, k, None)
    base_gc.max_new_tokens = args.max_new_tokens
    eos_ids = base_gc.eos_token_id
    if args.eos == "ignore":
        # Never stop, never mask: EOS is an ordinary token. generate() refills a None eos_token_id
        # from model.generation_config, so clear it there too.
        base_gc.eos_token_id = None
        base_gc.min_new_tokens = None
        model.generation_config.eos_token_id = None
    else:
        base_gc.min_new_tokens = args.max_new_tokens
    if base_gc.pad_token_id is None:
        pad = eos_ids[0] if isinstance(eos_ids, list) and eos_ids else eos_ids
        base_gc.pad_token_id = pad if pad is not None else 0

    pld = {"tokens": args.pld_tokens, "ngram": args.pld_ngram}

    def gen_config(strategy: str):
        gc = copy.deepcopy(base_gc)
        if strategy == "hf-pld":
            gc.prompt_lookup_num_tokens = pld["tokens"]
            gc.max_matching_ngram_size = pld["ngram"]
        return gc

    def sync():
        if on_cuda:
            torch.cuda.synchronize()

    @torch.inference_mode()
    def generate(i: int, strategy: str):
        ids = torch.tensor([ids_list[i]], dtype=torch.long, device=device)
        mask = torch.ones_like(ids)
        gc = gen_config(strategy)
        calls["n"] = 0
        sync()
        t0 = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gc)
        sync()
        ms = (time.perf_counter() - t0) * 1000.0
        new = out[0, ids.shape[1]:].tolist()
        if len(new) != args.max_new_tokens:
            raise RuntimeError(
                f"{strategy} on prompt {prompts[i]['id']} generated {len(new)} tokens, not {args.max_new_tokens} "
                f"(--eos {args.eos}; try the other --eos mode)"
            )
        steps = max(calls["n"] - 1, 0)
        acc = (len(new) - 1) / steps if steps > 0 else None
        return new, ms, steps, acc

    if args.tune_pld > 0 and "hf-pld" in strategies:
        k = min(args.tune_pld, len(prompts))
        best = None
        for n_tok in (3, 5, 10, 15, 20):
            for ng in (1, 2, 3):
                pld.update(tokens=n_tok, ngram=ng)
                generate(0, "hf-pld")  # warm this setting
                tps = mean([args.max_new_tokens * 1000.0 / generate(i, "hf-pld")[1] for i in range(k)])
                print(f"tune-pld: tokens={n_tok} ngram={ng}: {tps:.1f} tok/s", file=sys.stderr)
                if best is None or tps > best[0]:
                    best = (tps, n_tok, ng)
        pld.update(tokens=best[1], ngram=best[2])
        print(f"tune-pld: chose prompt_lookup_num_tokens={best[1]} max_matching_ngram_size={best[2]}", file=sys.stderr)

    print(
        f"hf_bench: {len(prompts)} prompts x {len(strategies)} strategies on {device} ({dtype_name}), "
        f"{args.max_new_tokens} new tokens, EOS {args.eos}, warm-up {args.warmup}, repeats {args.repeats}",
        file=sys.stderr,
    )
    for w in range(args.warmup):
        for s in strategies:
            generate(w % len(prompts), s)

    per_prompt: list[dict] = []
    reference_ids: dict[str, list[int]] = {}
    nondeterministic: list[str] = []
    t_run = time.perf_counter()
    for i, p in enumerate(prompts):
        runs: dict[str, list] = {s: [] for s in strategies}
        for _ in range(args.repeats):
            for s in strategies:
                runs[s].append(generate(i, s))
        ref = runs["hf-plain"][0][0]
        reference_ids[p["id"]] = ref
        for s in strategies:
            rs = runs[s]
            new, _, steps, acc = rs[0]
            if any(r[0] != new for r in rs):
                nondeterministic.append(f"{s}/{p['id']}")
            times = [r[1] for r in rs]
            ms = median(times)
            per_prompt.append(
                {
                    "id": p["id"],
                    "category": p["category"],
                    "strategy": s,
                    "promptTokens": len(ids_list[i]),
                    "tokens": len(new),
                    "ms": round(ms, 4),
                    "tokensPerSecond": round(len(new) * 1000.0 / ms, 4) if ms > 0 else 0.0,
                    "meanAccepted": None if acc is None else round(acc, 4),
                    "steps": steps,
                    "identical": new == ref,
                    "msRepeats": [round(t, 4) for t in times],
                }
            )
        done = i + 1
        if done % max(1, args.progress_every) == 0 or done == len(prompts):
            el = time.perf_counter() - t_run
            print(f"hf_bench: {done}/{len(prompts)} prompts, {el:.0f}s elapsed, ETA {el / done * (len(prompts) - done):.0f}s", file=sys.stderr)

    categories = list(dict.fromkeys(p["category"] for p in prompts))
    notes = []
    if truncated:
        notes.append(f"{len(truncated)} prompt(s) were cut from the left to fit the context: {', '.join(truncated)}")
    if nondeterministic:
        notes.append(f"repeats disagreed on the tokens for: {', '.join(nondeterministic)}")
    if args.eos == "suppress":
        notes.append("EOS suppressed with min_new_tokens: token lists may differ from casspec's ignoreEos runs after an EOS")

    doc = {
        "schema": "casspec-bench/1",
        "tool": "transformers",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        "device": {
            "backend": "cuda" if on_cuda else "cpu",
            "name": torch.cuda.get_device_name(torch.device(device)) if on_cuda else platform.processor() or platform.machine(),
            "host": {
                "platform": sys.platform,
                "python": platform.python_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "cuda": torch.version.cuda,
            },
        },
        "model": {
            "name": os.path.basename(os.path.abspath(args.model)),
            "path": os.path.abspath(args.model),
            "dtype": dtype_name,
            "attn": args.attn,
            "cudnnSdpa": bool(args.allow_cudnn_sdpa),
        },
        "protocol": {
            "maxNewTokens": args.max_new_tokens,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "greedy": True,
            "batchSize": 1,
            "ignoreEos": args.eos == "ignore",
            "eos": args.eos,
            "prompts": len(prompts),
            "promptsFile": os.path.abspath(args.prompts),
            "reference": "hf-plain",
            "pldTokens": pld["tokens"],
            "pldNgram": pld["ngram"],
            "timing": "per generate() call: prefill + decoding, torch.cuda.synchronize() before and after; "
                      "median over repeats; warm-up excluded; strategies interleaved per prompt",
            "speedup": "mean per-prompt tokens/s divided by hf-plain's mean per-prompt tokens/s, same category",
        },
        "strategies": strategies,
        "perPrompt": per_prompt,
        "summary": summarize(per_prompt, strategies, categories, "hf-plain"),
        "referenceIds": reference_ids,
        "notes": notes,
    }
    sys.stdout.write(format_table(doc))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"hf_bench: wrote {os.path.abspath(args.json)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
