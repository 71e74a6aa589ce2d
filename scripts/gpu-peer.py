#!/usr/bin/env python3
"""PyTorch timings at the shapes tools/device-check times, as the peer for its CUDA numbers.

fp32 with TF32 off (Headlight computes in fp32 FMA), eager mode, random weights of MiniLM-L6's
shapes built from a BertConfig (no network, no checkpoint). Writes JSON after every row so that a
run cut short still leaves what it measured.

usage: python3 scripts/gpu-peer.py --out peer.json [--device cuda] [--budget SECONDS] [--quick]
"""
import argparse
import json
import math
import platform
import statistics
import sys
import time

GEMMS = [(4096, 4096, 4096), (128, 384, 1536), (1024, 384, 1536), (1024, 1536, 384)]
LAYERS, HIDDEN, HEADS, FFN, VOCAB, POSITIONS = 6, 384, 12, 1536, 30522, 512
TOKENS = 22  # the 20-word benchmark sentence with [CLS] and [SEP]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=math.inf, help="seconds after which no further case starts")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    started = time.monotonic()
    doc = {"title": "PyTorch peer", "device": args.device, "python": platform.python_version(), "finished": False, "rows": []}

    def flush():
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)

    def add(row):
        doc["rows"].append(row)
        flush()
        values = row.get("values", {})
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"{row['status'].upper():5} {row.get('ms', float('nan')):10.3f} ms  {row['name']}  {shown} {row.get('message', '')}", flush=True)

    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means no peer on this machine
        add({"name": "import torch", "status": "fail", "ms": 0, "message": f"{type(e).__name__}: {e}"})
        return 2

    try:
        return run(args, doc, add, flush, started, torch)
    except Exception as e:  # noqa: BLE001 - report whatever stopped the peer with the rows it has
        add({"name": "peer", "status": "fail", "ms": 0, "message": f"{type(e).__name__}: {e}"})
        return 1


def run(args, doc, add, flush, started, torch):
    """The cases; each adds its row as it ends."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    doc["torch"] = torch.__version__
    doc["cuda"] = torch.version.cuda
    if cuda:
        doc["device_description"] = torch.cuda.get_device_name(device)
    flush()
    warmup, reps, cap = (1, 2, 10.0) if args.quick else (3, 20, 10.0)

    def timed(name, fn, warmup=warmup, reps=reps, cap=cap, extra=None):
        """Warm-up calls, then timed calls (CUDA events on a GPU); adds first, median and best ms."""
        if time.monotonic() - started > args.budget:
            add({"name": name, "status": "not run", "ms": 0, "message": "time budget spent"})
            return
        try:
            times, walls = [], []
            first = None
            begin = time.monotonic()
            for i in range(warmup + reps):
                if i > 0 and time.monotonic() - begin > cap:
                    break
                if cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    t0 = time.perf_counter()
                    start.record()
                    fn()
                    end.record()
                    end.synchronize()
                    ms = start.elapsed_time(end)
                    wall = (time.perf_counter() - t0) * 1000
                else:
                    t0 = time.perf_counter()
                    fn()
                    ms = wall = (time.perf_counter() - t0) * 1000
                if i == 0:
                    first = wall
                if i >= warmup or warmup == 0:
                    times.append(ms)
                    walls.append(wall)
            if not times:
                times.append(first)
                walls.append(first)
            median = statistics.median(times)
            # Events time the GPU's work; the wall time includes launches and the host copy, as Headlight's timings do.
            values = {"first_ms": first, "median_ms": median, "min_ms": min(times), "wall_median_ms": statistics.median(walls), "reps": len(times)}
            if extra:
                values.update(extra(median, min(times)))
            add({"name": name, "status": "pass", "ms": median, "values": values})
        except Exception as e:  # noqa: BLE001 - one failed case must not stop the others
            add({"name": name, "status": "fail", "ms": 0, "message": f"{type(e).__name__}: {e}"})
        finally:
            if cuda:
                torch.cuda.empty_cache()

    generator = torch.Generator(device="cpu").manual_seed(1)
    for m, k, n in GEMMS:
        a = (torch.rand(m, k, generator=generator) - 0.5).to(device)
        b = (torch.rand(k, n, generator=generator) - 0.5).to(device)
        c = torch.empty(m, n, device=device)
        flop = 2.0 * m * k * n
        timed(f"torch.matmul {m}x{k}x{n}", lambda a=a, b=b, c=c: torch.matmul(a, b, out=c),
              extra=lambda med, best, flop=flop: {"gflops_median": flop / (med * 1e6), "gflops_best": flop / (best * 1e6)})
        del a, b, c

    try:
        from transformers import BertConfig, BertModel
    except Exception as e:  # noqa: BLE001
        add({"name": "import transformers", "status": "fail", "ms": 0, "message": f"{type(e).__name__}: {e}"})
        doc["finished"] = True
        flush()
        return 1

    def bert(attention):
        torch.manual_seed(7)
        config = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                            intermediate_size=FFN, max_position_embeddings=POSITIONS, hidden_act="gelu",
                            attn_implementation=attention)
        return BertModel(config, add_pooling_layer=False).to(device).eval()

    def sentence_embedding(model, ids=None, embeds=None, mask=None):
        # Mean pooling and L2 normalisation, as the sentence-transformers folder Headlight times.
        hidden = model(input_ids=ids, inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    ids = torch.randint(1000, VOCAB, (8, 128), generator=generator)
    ids[:, 0], ids[:, -1] = 101, 102
    ids = ids.to(device)
    mask = torch.ones_like(ids)
    for attention in ("eager", "sdpa"):
        try:
            model = bert(attention)
        except Exception as e:  # noqa: BLE001
            add({"name": f"BertModel ({attention})", "status": "fail", "ms": 0, "message": f"{type(e).__name__}: {e}"})
            continue

        def forward(model=model):
            with torch.no_grad():
                sentence_embedding(model, ids=ids, mask=mask).cpu()

        timed(f"bert forward 8x128 ({attention})", forward, extra=lambda med, best: {"rows_per_s": 8 * 1000 / med})

        text = torch.randint(1000, VOCAB, (1, TOKENS), generator=generator)
        text[0, 0], text[0, -1] = 101, 102
        text = text.to(device)
        text_mask = torch.ones_like(text)
        with torch.no_grad():
            reference = sentence_embedding(model, ids=torch.flip(text, [1]), mask=text_mask)
            x = model.embeddings.word_embeddings(text)

        # Integrated gradients, 50 Gauss-Legendre points from the zero embedding, in one batch.
        nodes, weights = gauss_legendre(50)
        alphas = torch.tensor(nodes, device=device).view(-1, 1, 1)
        w = torch.tensor(weights, device=device).view(-1, 1, 1)

        def integrated_gradients(model=model, x=x, reference=reference, text_mask=text_mask):
            path = (alphas * x).detach().requires_grad_(True)
            similarity = sentence_embedding(model, embeds=path, mask=text_mask.expand(path.shape[0], -1)) @ reference[0]
            (grad,) = torch.autograd.grad(similarity.sum(), path)
            ((grad * w).sum(0) * x[0]).sum(-1).cpu()

        timed(f"ig-50 ({attention}, {TOKENS} tokens)", integrated_gradients, warmup=1, reps=5 if not args.quick else 1)

        # The forwards of Kernel SHAP with 2048 coalitions: 2048 rows of the sentence, batched by 512.
        rows = text.expand(2048, -1).contiguous()

        def shap_forwards(model=model, rows=rows):
            with torch.no_grad():
                for chunk in rows.split(512):
                    sentence_embedding(model, ids=chunk, mask=torch.ones_like(chunk)).cpu()

        timed(f"forwards 2048x{TOKENS} ({attention})", shap_forwards, warmup=1, reps=5 if not args.quick else 1)
        del model

    doc["finished"] = True
    doc["seconds"] = time.monotonic() - started
    flush()
    return 0 if all(r["status"] != "fail" for r in doc["rows"]) else 1


def gauss_legendre(n):
    """Nodes and weights of the n-point Gauss-Legendre rule on [0, 1] (Newton on the Legendre polynomial)."""
    nodes, weights = [], []
    for i in range(1, n + 1):
        x = math.cos(math.pi * (i - 0.25) / (n + 0.5))
        for _ in range(100):
            p0, p1 = 1.0, x
            for k in range(2, n + 1):
                p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
            dp = n * (x * p1 - p0) / (x * x - 1)
            dx = p1 / dp
            x -= dx
            if abs(dx) < 1e-15:
                break
        nodes.append((1 - x) / 2)
        weights.append(1 / ((1 - x * x) * dp * dp))
    return nodes, weights


if __name__ == "__main__":
    sys.exit(main())
