"""Activation and SAE-training throughput (tokens/s), each beside the GEMM floor measured in the same run.

    python benchmarks/bench_training.py                 # bundled SmolLM2-135M, blocks.3.hook_resid_pre
    python benchmarks/bench_training.py --model native  # tiny random bridge (no model load; smoke test)

The GEMM floor is the throughput a perfect implementation would reach if all its multiply-adds ran at the
speed of one large float32 matmul on this machine (measured here, same threads): tokens/s = GEMM FLOP/s /
FLOPs per token. FLOPs per token: activations, 2 x (parameters of the blocks run, embeddings excluded) +
attention scores and mixing; SAE training, 12 x d x F (encoder and decoder, forward and backward, Adam not
counted).
"""

from __future__ import annotations

import argparse
import time

import torch


def gemm_flops(seconds: float = 2.0) -> float:
    a, b = torch.randn(2048, 576), torch.randn(576, 4608)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return n * 2 * 2048 * 576 * 4608 / (time.perf_counter() - t0)


def bench_activations(model, hook: str, contexts: torch.Tensor, batch: int) -> tuple[float, float]:
    """(measured tokens/s, FLOPs per token) of hook activations with stop_at_layer."""
    from featgraph.activations import hook_activations
    from featgraph.activations.model import stop_layer_for

    hook_activations(model, contexts[:batch], hook)  # warm-up
    t0 = time.perf_counter()
    for lo in range(0, len(contexts), batch):
        hook_activations(model, contexts[lo : lo + batch], hook)
    rate = contexts.numel() / (time.perf_counter() - t0)
    n_blocks = stop_layer_for(model, hook) or model.cfg.n_layers
    params = sum(
        p.numel()
        for n, p in model.named_parameters()
        if any(f"layers.{i}." in n or f"blocks.{i}." in n for i in range(n_blocks))
    )
    attn = 2 * 2 * contexts.shape[1] / 2 * model.cfg.d_model * n_blocks  # QK^T and AV over ~T/2 keys
    return rate, 2 * params + attn


def bench_training(d: int, widths: list[int], batch: int, steps: int) -> list[tuple[int, float]]:
    from featgraph.training.trainer import TrainConfig, _Trainer

    x = torch.randn(batch, d)
    out = []
    for w in widths:
        t = _Trainer(w, d, TrainConfig(), b_dec=torch.zeros(d), seed=0)
        t.step(x, 1.0, 1e-4)
        t0 = time.perf_counter()
        for _ in range(steps):
            t.step(x, 1.0, 1e-4)
        out.append((w, steps * batch / (time.perf_counter() - t0)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="'native' = tiny random bridge; default: bundled SmolLM2")
    p.add_argument("--hook", default="blocks.3.hook_resid_pre")
    p.add_argument("--contexts", type=int, default=32)
    p.add_argument("--context-size", type=int, default=128)
    p.add_argument("--widths", default="576,1152,2304,4608")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    if args.model == "native":
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge

        model = TransformerBridge.boot_native(
            TransformerBridgeConfig(
                d_model=576, d_head=64, n_layers=6, n_ctx=args.context_size, n_heads=9, d_vocab=1000, seed=0
            )
        )
        contexts = torch.randint(0, 1000, (args.contexts, args.context_size))
    else:
        from featgraph.activations import corpus_contexts, load_model

        model = load_model(args.model)
        contexts = corpus_contexts(
            model, split="heldout", context_size=args.context_size, n_contexts=args.contexts
        )
    flops = gemm_flops()
    print(f"threads={args.threads}  GEMM (2048x576 @ 576x4608, fp32): {flops / 1e9:.1f} GFLOP/s")
    print()
    rate, per_tok = bench_activations(model, args.hook, contexts, batch=8)
    print(f"activations  {model.cfg.model_name} {args.hook}  ({args.contexts} x {args.context_size} tokens)")
    print(f"{'':14}{'ours tok/s':>12}{'GEMM floor tok/s':>18}{'ours / floor':>14}")
    print(f"{'':14}{rate:12.0f}{flops / per_tok:18.0f}{rate / (flops / per_tok):14.2f}")
    print()
    d = int(model.cfg.d_model)
    print(
        f"SAE training (ReLU + L1, Adam, unit-norm decoder), d={d}, batch {args.batch_size}, "
        f"{args.steps} steps"
    )
    print(f"{'width':>8}{'ours tok/s':>14}{'GEMM floor tok/s':>18}{'ours / floor':>14}")
    widths = [int(w) for w in args.widths.split(",")]
    for w, r in bench_training(d, widths, args.batch_size, args.steps):
        floor = flops / (12 * d * w)
        print(f"{w:8d}{r:14.0f}{floor:18.0f}{r / floor:14.2f}")


if __name__ == "__main__":
    main()
