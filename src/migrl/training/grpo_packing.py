"""GRPO group packing, pure tensor work: which rows of a batch share a prompt and images, and one packed
sequence per group for the policy, old-policy and reference forwards.

- ``row_groups``: the group of each row (same prompt tokens and same images; tokens alone are not enough).
- ``pack_shared_prefix``: a group becomes ONE packed sequence ``[prompt[:-1], (last, c_1), ..., (last, c_G)]``
  with an attention mask under which each completion block sees the shared prompt and itself only, the
  position ids each token has in its own unpacked row, and pre-shifted labels; its images go in once.
  Every completion token sees exactly the keys, values and positions it sees in TRL's per-rollout row,
  so log-probs and entropies match to float rounding, and gradients through the shared prompt add up
  the G rollouts' contributions as the separate rows do. (The last prompt token is repeated at the
  head of each block because one position can carry one label, and it predicts each c_i's first token.)
- ``chunk_groups``: whole groups per forward chunk.
- ``group_order``: keeps a group's rollouts in one micro-batch when TRL shuffles the generation batch,
  drawing the same random permutation as TRL so nothing else of the run's randomness moves.

No model and no trainer here: ``migrl.training.grpo_sharing`` calls these from TRL's methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch


# -- which rows belong together ------------------------------------------------------------------

def fingerprint(t: torch.Tensor, samples: int = 32) -> bytes:
    """A cheap key for bucketing equal tensors (verified with ``torch.equal`` afterwards)."""
    flat = t.reshape(-1)
    step = max(1, flat.numel() // samples)
    return bytes(str(tuple(t.shape)), "ascii") + flat[::step][:samples].detach().cpu().numpy().tobytes()


def row_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, pixels: Sequence[torch.Tensor | None] | None) -> list[int]:
    """Group id of each row: rows with the same prompt tokens and the same images share one.

    Tokens alone are not enough: two records can ask the same question about different pictures.
    """
    ids, mask = prompt_ids.cpu(), prompt_mask.cpu()
    buckets: dict[bytes, list[int]] = {}
    leaders: list[int] = []
    out: list[int] = []
    for row in range(ids.size(0)):
        key = ids[row][mask[row].bool()].numpy().tobytes()
        pix = pixels[row] if pixels is not None else None
        if pix is not None and pix.numel():
            key += fingerprint(pix)
        for gid in buckets.setdefault(key, []):
            other = pixels[leaders[gid]] if pixels is not None else None
            if (pix is None) == (other is None) and (pix is None or torch.equal(pix, other)):
                out.append(gid)
                break
        else:
            buckets[key].append(len(leaders))
            out.append(len(leaders))
            leaders.append(row)
    return out


def group_order(permutation: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
    """``permutation`` reordered so each group's rows are adjacent: groups in the order their first
    row appears in it (TRL's draw decides), a group's rows in their original order. That order is the
    one the reference forward packed them in, so policy and reference see the same packed sequence
    and agree to the bit where their weights do (a KL of exactly 0 at the start, as in TRL)."""
    by_group: dict[int, list[int]] = {}
    for row in permutation.tolist():
        by_group.setdefault(groups[row], []).append(row)
    return torch.tensor([row for rows in by_group.values() for row in sorted(rows)], dtype=torch.long)


def rows_of_pixels(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, num_images: Sequence[int]) -> list[torch.Tensor]:
    """pixel_values split per row (Qwen layout: patches of all images, concatenated)."""
    per_image = image_grid_thw.prod(-1).tolist()
    sections, start = [], 0
    for n in num_images:
        sections.append(sum(per_image[start:start + n]))
        start += n
    return list(torch.split(pixel_values, sections))


# -- one packed sequence per group ---------------------------------------------------------------

@dataclass
class PackedBatch:
    model_inputs: dict[str, Any]
    row_index: torch.Tensor  # (B, C): packed row of each completion token
    col_index: torch.Tensor  # (B, C): packed column of each completion token


def pack_shared_prefix(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    groups: Sequence[int],
    position_ids: torch.Tensor,
    pixel_rows: list[torch.Tensor] | None,
    grid_rows: list[torch.Tensor] | None,
    pad_token_id: int,
    attn_implementation: str,
    mask_dtype: torch.dtype,
) -> PackedBatch:
    """Pack the rows of a (prompt + completion) batch, one sequence per group (see the module doc).

    ``position_ids`` (3, B, P + C) are the positions of the unpacked rows (``get_rope_index``), so a
    packed token keeps the position it has in TRL's row; completion labels are pre-shifted
    (``shift_labels``: the label at a position is the token predicted there).
    """
    device = input_ids.device
    c = logits_to_keep
    p = input_ids.size(1) - c
    members: dict[int, list[int]] = {}
    for row, gid in enumerate(groups):
        members.setdefault(gid, []).append(row)
    seqs, poss, labels, segs, valids = [], [], [], [], []
    row_index = torch.empty(input_ids.size(0), c, dtype=torch.long)
    col_index = torch.empty(input_ids.size(0), c, dtype=torch.long)
    pixels, grids = [], []
    for packed_row, rows in enumerate(members.values()):
        lead = rows[0]
        real = int(attention_mask[lead, :p].sum())  # prompts are left-padded
        start = p - real
        tok = [input_ids[lead, start : p - 1]]
        pos = [position_ids[:, lead, start : p - 1]]
        lab = [torch.full((real - 1,), -100, dtype=torch.long, device=device)]
        seg = [torch.zeros(real - 1, dtype=torch.long, device=device)]
        val = [torch.ones(real - 1, dtype=torch.bool, device=device)]
        offset = real - 1
        for block, row in enumerate(rows, start=1):
            comp = input_ids[row, p:]
            comp_mask = attention_mask[row, p:].bool()
            tok.append(torch.cat([input_ids[row, p - 1 : p], comp]))
            pos.append(position_ids[:, row, p - 1 :])
            lab.append(torch.cat([comp.masked_fill(~comp_mask, -100), torch.full((1,), -100, dtype=torch.long, device=device)]))
            seg.append(torch.full((c + 1,), block, dtype=torch.long, device=device))
            val.append(torch.cat([torch.ones(1, dtype=torch.bool, device=device), comp_mask]))
            row_index[row] = packed_row
            col_index[row] = torch.arange(offset, offset + c)
            offset += c + 1
        seqs.append(torch.cat(tok))
        poss.append(torch.cat(pos, dim=1))
        labels.append(torch.cat(lab))
        segs.append(torch.cat(seg))
        valids.append(torch.cat(val))
        if pixel_rows is not None:
            pixels.append(pixel_rows[lead])
            grids.append(grid_rows[lead])
    length = max(s.numel() for s in seqs)
    n = len(seqs)
    ids = torch.full((n, length), pad_token_id, dtype=input_ids.dtype, device=device)
    pos_out = torch.zeros(3, n, length, dtype=position_ids.dtype, device=device)
    lab_out = torch.full((n, length), -100, dtype=torch.long, device=device)
    allowed = torch.zeros(n, 1, length, length, dtype=torch.bool, device=device)
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    for i, (s, ps, lb, sg, vl) in enumerate(zip(seqs, poss, labels, segs, valids)):
        m = s.numel()
        ids[i, :m], pos_out[:, i, :m], lab_out[i, :m] = s, ps, lb
        same_or_prompt = (sg.unsqueeze(0) == 0) | (sg.unsqueeze(0) == sg.unsqueeze(1))
        allowed[i, 0, :m, :m] = causal[:m, :m] & same_or_prompt & vl.unsqueeze(0)
    # every query keeps at least itself: a row with no key would be NaN and poison the backward
    allowed |= torch.eye(length, dtype=torch.bool, device=device)
    if attn_implementation == "eager":
        mask: torch.Tensor = torch.zeros(allowed.shape, dtype=mask_dtype, device=device)
        mask.masked_fill_(~allowed, torch.finfo(mask_dtype).min)
    else:
        mask = allowed
    inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": pos_out, "shift_labels": lab_out}
    if pixels:
        inputs["pixel_values"] = torch.cat(pixels)
        inputs["image_grid_thw"] = torch.cat(grids)
    return PackedBatch(inputs, row_index.to(device), col_index.to(device))


def chunk_groups(groups: Sequence[int], max_rows: int) -> list[list[int]]:
    """Rows split into chunks of whole groups, each at most ``max_rows`` rows (or one group)."""
    members: dict[int, list[int]] = {}
    for row, gid in enumerate(groups):
        members.setdefault(gid, []).append(row)
    chunks: list[list[int]] = [[]]
    for rows in members.values():
        if chunks[-1] and len(chunks[-1]) + len(rows) > max_rows:
            chunks.append([])
        chunks[-1].extend(rows)
    return chunks
