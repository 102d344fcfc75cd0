"""Batching: which samples go together (the plan) and how they become tensors (collate).

A plan is a list of *global micro-batches*; each is a list of rows, each row a list of sample indices (one
index unless packing). Every process builds the same plan from the seed and epoch and takes its own
contiguous share of rows (`shard`), so a run on N processes sees exactly the samples a single process
with an N-times larger batch sees — which is what makes DDP and single-process losses comparable, and
lets `--resume` restart at the exact micro-batch.

- dynamic padding: rows padded to the longest row of the micro-batch; with `group_by_length`, samples are
  sorted by length inside shuffled mega-chunks, so batches hold similar lengths (little padding);
- `padding="max"`: every row padded to max_len (MING's old trainer; kept to measure against);
- packing: samples concatenated into rows of at most max_len tokens, each with position ids restarting
  at 0. The model gets `attention_mask=None` and `position_ids`, from which transformers builds a
  block-diagonal causal mask (or uses varlen flash-attention), so samples never attend to each other.
"""

from __future__ import annotations

import random
from typing import Sequence

IGNORE = -100
MEGA_BATCHES = 50  # length grouping sorts within chunks of this many global micro-batches


def plan(lengths: Sequence[int], rows_per_batch: int, *, seed: int, epoch: int, group_by_length: bool = True,
         packing_len: int | None = None, shuffle: bool = True) -> list[list[list[int]]]:
    """Global micro-batches for one epoch. `rows_per_batch` = per-device batch size x processes."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    if packing_len:
        rows = pack(order, lengths, packing_len)
        if shuffle:
            rng.shuffle(rows)
        return [rows[i:i + rows_per_batch] for i in range(0, len(rows), rows_per_batch)]
    if not group_by_length:
        return [[[j] for j in order[i:i + rows_per_batch]] for i in range(0, len(order), rows_per_batch)]
    mega = rows_per_batch * MEGA_BATCHES
    batches = []
    for i in range(0, len(order), mega):
        chunk = sorted(order[i:i + mega], key=lambda j: -lengths[j])
        batches += [[[j] for j in chunk[k:k + rows_per_batch]] for k in range(0, len(chunk), rows_per_batch)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def pack(order: Sequence[int], lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit-decreasing bin packing into rows of at most `capacity` tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for j in sorted(order, key=lambda j: -lengths[j]):
        n = lengths[j]
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(j)
                room[r] -= n
                break
        else:
            rows.append([j])
            room.append(capacity - n)
    return rows


def shard(batch: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This process's contiguous share of a global micro-batch's rows (sizes differ by at most one)."""
    n = len(batch)
    start = rank * n // world
    return batch[start:(rank + 1) * n // world]


def collate(rows: list[list[int]], samples, pad_id: int, *, packing: bool = False, pad_to: int | None = None):
    """Rows of sample indices -> dict of tensors: input_ids, labels and attention_mask (padded) or
    position_ids (packed; attention_mask None). Right padding; pad labels are -100."""
    import torch

    seqs, labs, poss = [], [], []
    for row in rows:
        ids: list[int] = []
        lab: list[int] = []
        pos: list[int] = []
        for j in row:
            s = samples[j]
            ids += s.input_ids
            lab += [IGNORE] + s.labels[1:]  # a sample's first token is never predicted from the previous sample
            pos += list(range(len(s.input_ids)))
        seqs.append(ids)
        labs.append(lab)
        poss.append(pos)
    width = max(len(s) for s in seqs)
    if pad_to:
        width = max(width, pad_to)
    n = len(seqs)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    position = torch.zeros((n, width), dtype=torch.long)
    for i, (ids, lab, pos) in enumerate(zip(seqs, labs, poss)):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        labels[i, :len(lab)] = torch.tensor(lab)
        attention[i, :len(ids)] = 1
        position[i, :len(pos)] = torch.tensor(pos)
    if packing:
        # pads continue counting so they never look like the start of a new sequence to the mask builder
        for i, pos in enumerate(poss):
            if len(pos) < width:
                position[i, len(pos):] = torch.arange(pos[-1] + 1, pos[-1] + 1 + width - len(pos))
        return {"input_ids": input_ids, "labels": labels, "position_ids": position, "attention_mask": None,
                "real_tokens": int(attention.sum())}
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention, "real_tokens": int(attention.sum())}


def batch_targets(rows: list[list[int]], samples) -> int:
    return sum(samples[j].num_targets for row in rows for j in row)
