"""A tiny Gato-style decoder trained on a trajcorpus output folder (PyTorch, CPU is enough).

    python examples/train_tiny_gato.py --data demo-out --minutes 5

What it shows: the tokens are learnable. It holds out about 10% of the episodes of every config
(``ShardDataset.select`` over the episode index), trains on the rest streamed as a weighted
Mixture, and prints, on the held-out sequences, the masked next-token loss against the unigram
baseline and the action-token accuracy against the majority-class baseline (both baselines are
counted on the training split).

The model follows Gato (Reed et al. 2022, section 2): token ids are embedded, the 16x16 patches
at image slots (normalised to [-0.25, 0.25] by the loader) go through a linear patch embedding
plus row/column embeddings of their place in the image, observation tokens add a learned local
position embedding, and a causal transformer predicts each next token; the loss counts only the
targets (``loss_mask``: text and action tokens outside prompts).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time

import torch
from torch import nn

from trajcorpus.shards import Mixture, ShardDataset, TorchShardDataset, read_manifest
from trajcorpus.tokenizers.scheme import PATCH, VOCAB_SIZE, Modality

CHANNELS = 3  # grayscale patches are repeated to RGB by the loader (channels=3)


class TinyGato(nn.Module):
    def __init__(self, d: int, layers: int, heads: int, context: int, max_local: int = 512):
        super().__init__()
        self.tok = nn.Embedding(VOCAB_SIZE, d)
        self.patch = nn.Linear(PATCH * PATCH * CHANNELS, d)
        self.patch_row, self.patch_col = nn.Embedding(64, d), nn.Embedding(64, d)
        self.local = nn.Embedding(max_local, d)
        self.pos = nn.Embedding(context, d)
        block = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, VOCAB_SIZE)
        self.max_local = max_local

    def embed(self, b: dict) -> torch.Tensor:
        tokens = b["tokens"].long()
        x = self.tok(tokens.clamp(min=0))
        image = tokens < 0  # image-patch slots, in the same order as b["patches"]
        if image.any():
            valid = torch.arange(b["patches"].shape[1])[None, :] < b["patch_count"][:, None]
            pos = b["patch_position"][valid].long().clamp(0, 63)
            patches = self.patch(b["patches"][valid].flatten(1)) + \
                self.patch_row(pos[:, 0]) + self.patch_col(pos[:, 1])
            x = x.masked_scatter(image[..., None], patches.to(x.dtype))
        local = b["local_position"].long()
        x = x + self.local(local.clamp(0, self.max_local - 1)) * (local >= 0)[..., None]
        return x + self.pos(torch.arange(tokens.shape[1]))[None]

    def forward(self, b: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, targets, is_action) at every position whose next token is a target."""
        x = self.embed(b)
        n = x.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(n)
        h = self.norm(self.blocks(x, mask=causal, is_causal=True))
        target = b["loss_mask"][:, 1:].bool() & (b["tokens"][:, 1:] >= 0)
        logits = self.head(h[:, :-1][target])
        return logits, b["tokens"][:, 1:][target].long(), \
            (b["modality"][:, 1:][target] == Modality.ACTION)


def crop(b: dict, context: int) -> dict:
    """The first ``context`` tokens (and the patches of their image slots)."""
    if b["tokens"].shape[1] <= context:
        return b
    out = {k: b[k][:, :context] for k in ("tokens", "modality", "loss_mask", "local_position")}
    count = (out["tokens"] < 0).sum(1).to(torch.int32)
    p = int(count.max()) if len(count) else 0
    out.update(patches=b["patches"][:, :p], patch_position=b["patch_position"][:, :p],
               patch_count=count)
    return out


def split_episodes(out: str, holdout: float) -> tuple[dict, dict]:
    """Per config: a training and a held-out ShardDataset, by a stable hash of episode ids."""
    train, held = {}, {}
    for config in sorted(read_manifest(out).configs):
        ds = ShardDataset(out, config)
        if ds.patch_size != 16:  # another token scheme's config (MGDT's 14x14): not Gato's
            continue
        eps = sorted(set(ds.index().table.column("episode_id").to_pylist()))
        if len(eps) < 3:
            train[config] = ds
            continue
        score = {e: int(hashlib.sha1(e.encode()).hexdigest(), 16) % 1000 for e in eps}
        out_eps = [e for e in eps if score[e] < holdout * 1000] or [min(eps, key=score.get)]
        held[config] = ds.select(episode_ids=out_eps)
        train[config] = ds.select(episode_ids=[e for e in eps if e not in out_eps])
    return train, held


def batches(ds, batch: int, **kw):
    return TorchShardDataset(ds, batch, normalize=True, channels=CHANNELS, **kw).loader()


def baselines(train: dict, context: int) -> tuple[torch.Tensor, int]:
    """Unigram log-probabilities of target tokens (add-one) and the majority action token."""
    counts = torch.ones(VOCAB_SIZE, dtype=torch.float64)
    actions = torch.zeros(VOCAB_SIZE, dtype=torch.float64)
    for ds in train.values():
        for b in batches(ds, 16):
            b = crop(b, context)
            t = b["loss_mask"][:, 1:].bool() & (b["tokens"][:, 1:] >= 0)
            tok = b["tokens"][:, 1:][t].long()
            counts += torch.bincount(tok, minlength=VOCAB_SIZE)
            act = b["modality"][:, 1:][t] == Modality.ACTION
            actions += torch.bincount(tok[act], minlength=VOCAB_SIZE)
    return (counts / counts.sum()).log(), int(actions.argmax())


@torch.no_grad()
def evaluate(model: TinyGato, held: dict, context: int, unigram: torch.Tensor,
             majority: int) -> dict:
    model.eval()
    loss = base = correct = major = n = n_act = 0.0
    for ds in held.values():
        for b in batches(ds, 8):
            logits, target, is_act = model(crop(b, context))
            loss += nn.functional.cross_entropy(logits, target, reduction="sum").item()
            base += -unigram[target].sum().item()
            n += len(target)
            pred = logits.argmax(-1)
            correct += (pred[is_act] == target[is_act]).sum().item()
            major += (target[is_act] == majority).sum().item()
            n_act += int(is_act.sum())
    model.train()
    return {"loss": loss / n, "unigram": base / n, "acc": correct / max(n_act, 1),
            "majority": major / max(n_act, 1), "targets": int(n), "actions": int(n_act)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="a trajcorpus output folder (local or gs://)")
    ap.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=256, help="tokens of each sequence used")
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    train, held = split_episodes(args.data, args.holdout)
    unigram, majority = baselines(train, args.context)
    model = TinyGato(args.d_model, args.layers, args.heads, args.context)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    stream = iter(batches(Mixture(train), args.batch, seed=args.seed, shuffle_buffer=64))
    start, step = time.monotonic(), 0
    while time.monotonic() - start < args.minutes * 60 and \
            (not args.max_steps or step < args.max_steps):
        logits, target, _ = model(crop(next(stream), args.context))
        loss = nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for g in opt.param_groups:  # short warm-up, then constant
            g["lr"] = args.lr * min(1.0, (step + 1) / 50)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step}: train loss {loss.item():.3f} "
                  f"({time.monotonic() - start:.0f}s)", flush=True)
    r = evaluate(model, held, args.context, unigram, majority)
    print(f"trained {step} steps in {time.monotonic() - start:.0f}s on "
          f"{', '.join(train)}; held-out: {r['targets']} targets, {r['actions']} actions")
    print(f"held-out masked next-token loss: {r['loss']:.3f} nats "
          f"(unigram baseline {r['unigram']:.3f}, ppl {math.exp(r['loss']):.1f})")
    print(f"held-out action-token accuracy: {r['acc']:.3f} "
          f"(majority-class baseline {r['majority']:.3f})")
    return r


if __name__ == "__main__":
    main()
