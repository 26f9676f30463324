"""Per-GPU memory plan for training Qwen2.5-VL with TRL + accelerate (DDP or DeepSpeed ZeRO).

Parameter counts are exact (tests compare them with ``sum(p.numel())`` of real transformers models), and so
are the AdamW state bytes (compared with a real ``torch.optim.AdamW``). Everything that depends on the
run -- activations, logits, allocator overhead -- is an estimate; the formulas are written out below.

Terms, per GPU, for N parameters (Nt trainable), W GPUs, bf16 = 2 bytes:
  weights    DDP/ZeRO-2: 2N; ZeRO-3: 2N/W; ZeRO-3 + param offload: two decoder layers gathered at a time
  grads      ZeRO-2/3: 2Nt/W; DDP: 2 x bytes(param) x Nt (param.grad + DDP's bucket copy, as PyTorch's DDP docs
             say of gradient_as_bucket_view=False, which HF Trainer keeps)
  optimizer  DeepSpeed mixed precision: 12Nt/W (fp32 master + Adam m, v; ZeRO paper, K = 12), on CPU with
             offload; DDP: torch AdamW keeps m, v in the parameter dtype + a fp32 step per tensor
  reference  frozen copy for the KL term (GRPO, beta > 0, full fine-tuning): 2N, or 2N/W under ZeRO-3
  activations, gradient checkpointing (estimate): every layer keeps its input, L x b x s x h x 2 bytes, and the
             layer being recomputed holds its intermediates and their gradients, 2 x b x s x (7h + 2 kv_dim + 4i) x 2
  logits     (estimate) b x t x vocab x c: SFT t = s, c = 10 (bf16 logits, fp32 copy in the loss, fp32 grad);
             GRPO t = completion, c = 6 (bf16 logits, the /temperature copy, grad)
  KV cache   GRPO rollouts: 2 x L x kv_heads x head_dim x (prompt + completion) x sequences x 2 bytes; TRL
             generates per_device_train_batch_size x steps_per_generation sequences per GPU at once
  gathered   ZeRO-3 GRPO: TRL gathers the whole policy for generation (ds3_gather_for_generation=True)
Peak = max(training phase, generation phase) + a fixed 2 GB for the CUDA context and NCCL buffers.
The frozen vision tower runs without grad, so it stores no activations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GB = 1e9
CUDA_OVERHEAD_GB = 2.0


@dataclass(frozen=True)
class VLShape:
    """The sizes of a Qwen2.5-VL model that decide its parameter count and memory."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool
    vision_depth: int = 32
    vision_hidden: int = 1280
    vision_intermediate: int = 3420
    vision_heads: int = 16
    patch: int = 14
    temporal_patch: int = 2
    in_channels: int = 3
    merge: int = 2
    source: str = ""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads  # Qwen2.5-VL's text config has no separate head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


# Values from the released config.json files (vision fields a file omits take transformers' defaults).
SHAPES: dict[str, VLShape] = {
    "3b": VLShape(
        "Qwen2.5-VL-3B", hidden=2048, layers=36, heads=16, kv_heads=2, intermediate=11008, vocab=151936, tied=True,
        source="Qwen/Qwen2.5-VL-3B-Instruct config.json (mirrored at huggingface.co/zyoNoob/Qwen2.5-VL-3B-Instruct-AWQ "
        "and huggingface.co/dahwinsingularity/vllm2); vision depth/intermediate/heads are not in the file: "
        "transformers defaults 32/3420/16",
    ),
    "7b": VLShape(
        "Qwen2.5-VL-7B", hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064, tied=False,
        source="huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blame/main/config.json (vision 32 x 1280, 3420, 16 heads)",
    ),
    "32b": VLShape(
        "Qwen2.5-VL-32B", hidden=5120, layers=64, heads=40, kv_heads=8, intermediate=27648, vocab=152064, tied=False,
        vision_intermediate=3456,
        source="UNVERIFIED for the VL release: language sizes from "
        "huggingface.co/Qwen/Qwen2.5-32B/blob/main/config.json; vision as in the 72B config (intermediate 3456)",
    ),
    "72b": VLShape(
        "Qwen2.5-VL-72B", hidden=8192, layers=80, heads=64, kv_heads=8, intermediate=29568, vocab=152064, tied=False,
        vision_intermediate=3456,
        source="huggingface.co/Qwen/Qwen2.5-VL-72B-Instruct-AWQ config.json "
        "(_name_or_path Qwen/Qwen2.5-VL-72B-Instruct: 8192 x 80, 64/8 heads, vision intermediate 3456); "
        "its LM intermediate 29696 is AWQ padding, the bf16 model's "
        "29568 is that of Qwen2.5-72B / Qwen2-VL-72B (OPEA/Qwen2-VL-72B-Instruct-int4-sym-inc config.json)",
    ),
}


def shape_from_config(config, name: str = "custom") -> VLShape:
    """A VLShape from a transformers Qwen2_5_VLConfig (for a model folder or the tiny factory's config)."""
    t, v = config.text_config, config.vision_config
    return VLShape(
        name, hidden=t.hidden_size, layers=t.num_hidden_layers, heads=t.num_attention_heads,
        kv_heads=t.num_key_value_heads, intermediate=t.intermediate_size, vocab=t.vocab_size,
        tied=bool(getattr(config, "tie_word_embeddings", False) or getattr(t, "tie_word_embeddings", False)),
        vision_depth=v.depth, vision_hidden=v.hidden_size, vision_intermediate=v.intermediate_size,
        vision_heads=v.num_heads, patch=v.patch_size, temporal_patch=v.temporal_patch_size,
        in_channels=v.in_channels, merge=v.spatial_merge_size,
    )


def to_config(shape: VLShape):
    """A transformers Qwen2_5_VLConfig of this shape (random weights; used to check the counts)."""
    from transformers import Qwen2_5_VLConfig

    half, part = shape.head_dim // 2, shape.head_dim * 3 // 16  # [16, 24, 24] for head_dim 128
    mrope = [half - 2 * part, part, part]  # must sum to head_dim / 2
    text = dict(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
        tie_word_embeddings=shape.tied, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    vision = dict(
        depth=shape.vision_depth, hidden_size=shape.vision_hidden, intermediate_size=shape.vision_intermediate,
        num_heads=shape.vision_heads, out_hidden_size=shape.hidden, patch_size=shape.patch,
        temporal_patch_size=shape.temporal_patch, in_channels=shape.in_channels, spatial_merge_size=shape.merge,
    )
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=shape.tied)


@dataclass(frozen=True)
class ParamCount:
    """Parameters and parameter tensors (AdamW keeps one step counter per tensor)."""

    vision: int  # patch embedding + blocks
    merger: int  # the projector
    language: int  # embeddings + decoder layers + final norm + lm_head (when not tied)
    vision_tensors: int
    language_tensors: int

    @property
    def total(self) -> int:
        return self.vision + self.merger + self.language

    @property
    def tensors(self) -> int:
        return self.vision_tensors + self.language_tensors


def param_count(s: VLShape) -> ParamCount:
    vh, vi = s.vision_hidden, s.vision_intermediate
    patch = s.in_channels * s.temporal_patch * s.patch * s.patch * vh  # Conv3d, no bias
    block = 2 * vh + (3 * vh * vh + 3 * vh) + (vh * vh + vh) + 2 * (vh * vi + vi) + (vi * vh + vh)
    m = vh * s.merge * s.merge  # the merger concatenates merge x merge patches
    merger = vh + (m * m + m) + (m * s.hidden + s.hidden)
    h, q, kv = s.hidden, s.heads * s.head_dim, s.kv_dim
    layer = (h * q + q) + 2 * (h * kv + kv) + q * h + 3 * h * s.intermediate + 2 * h  # qkv have bias, o_proj not
    language = s.vocab * h + s.layers * layer + h + (0 if s.tied else s.vocab * h)
    return ParamCount(
        vision=patch + s.vision_depth * block, merger=merger, language=language,
        vision_tensors=1 + 12 * s.vision_depth + 5, language_tensors=1 + 12 * s.layers + 1 + (0 if s.tied else 1),
    )


def lora_count(s: VLShape, r: int) -> tuple[int, int]:
    """(parameters, tensors) of LoRA rank r on q/k/v/o/gate/up/down of every language-model layer."""
    h, q, kv, i = s.hidden, s.heads * s.head_dim, s.kv_dim, s.intermediate
    per_layer = r * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h))
    return s.layers * per_layer, s.layers * 7 * 2


def adamw_state_bytes(params: int, tensors: int, dtype_bytes: int) -> int:
    """Bytes of torch.optim.AdamW's state after a step: exp_avg and exp_avg_sq in the parameter dtype,
    plus a float32 ``step`` tensor per parameter tensor (non-capturable, non-fused default)."""
    return 2 * params * dtype_bytes + 4 * tensors


@dataclass(frozen=True)
class Setting:
    """One training configuration to size. Token counts include image tokens."""

    label: str
    stage: str  # "sft" | "grpo"
    zero: int  # 0 = DDP, 2, 3
    offload: bool = False  # ZeRO-3: optimizer and parameters on CPU
    lora_r: int | None = None  # None: full fine-tuning of the language model
    gpus: int = 8
    micro_batch: int = 4  # sequences in one forward per GPU (GRPO: completions)
    seq_len: int = 1024  # tokens of one training sequence
    logit_tokens: int = 1024  # tokens whose logits are materialised per sequence
    rollouts_at_once: int = 0  # sequences generated at once per GPU (0: no generation)
    prompt_len: int = 0
    completion_len: int = 0
    reference: bool = False  # frozen reference model for the KL term

    def __post_init__(self) -> None:
        if self.zero not in (0, 2, 3):
            raise ValueError(f"zero must be 0 (DDP), 2 or 3, got {self.zero}")
        if self.offload and self.zero != 3:
            raise ValueError("offload is modelled for ZeRO-3 only (launch/zero3_offload.yaml)")


@dataclass(frozen=True)
class Estimate:
    setting: Setting
    weights: float
    grads: float
    optimizer: float
    reference: float
    activations: float
    logits: float
    kv_cache: float
    gathered: float
    cpu: float  # host RAM per GPU process for offloaded states
    overhead: float = CUDA_OVERHEAD_GB

    @property
    def persistent(self) -> float:
        return self.weights + self.grads + self.optimizer + self.reference + self.overhead

    @property
    def train_peak(self) -> float:
        return self.persistent + self.activations + self.logits

    @property
    def generate_peak(self) -> float:
        return self.persistent + self.gathered + self.kv_cache

    @property
    def peak(self) -> float:
        return max(self.train_peak, self.generate_peak)


def estimate(shape: VLShape, st: Setting) -> Estimate:
    """Per-GPU memory in GB (1e9 bytes) for one setting; vision tower and projector frozen."""
    pc = param_count(shape)
    n = pc.total
    full_lm = pc.language
    if st.lora_r is None:
        nt, tensors = full_lm, pc.language_tensors
        n_all = n
    else:
        nt, tensors = lora_count(shape, st.lora_r)
        n_all = n + nt
    w = st.gpus
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    layer_params = (pc.language - embeddings - shape.hidden) / shape.layers

    cpu = 0.0
    if st.zero == 0:
        # PEFT upcasts LoRA adapters to fp32; full fine-tuning keeps the loader's bf16 weights.
        pt = 4 if st.lora_r is not None else 2
        weights = 2 * (n_all - nt) + pt * nt
        grads = 2 * pt * nt
        optimizer = adamw_state_bytes(nt, tensors, pt)
    else:
        weights = 2 * n_all if st.zero == 2 else 2 * n_all / w
        grads = 2 * nt / w
        optimizer = 12 * nt / w
        if st.offload:
            cpu = (optimizer + 4 * nt / w + weights)  # fp32 master/m/v + fp32 grads + bf16 params on the host
            weights = 2 * 2 * layer_params  # two decoder layers gathered at a time
            grads = 0.0
            optimizer = 0.0
    reference = 0.0
    if st.reference and st.lora_r is None:  # with LoRA the reference is the base with the adapter disabled
        reference = 0.0 if st.offload else (2 * n if st.zero in (0, 2) else 2 * n / w)
    b, s, h = st.micro_batch, st.seq_len, shape.hidden
    activations = shape.layers * b * s * h * 2 + 2 * b * s * (7 * h + 2 * shape.kv_dim + 4 * shape.intermediate) * 2
    logits = b * st.logit_tokens * shape.vocab * (10 if st.stage == "sft" else 6)
    kv = 2 * shape.layers * shape.kv_dim * (st.prompt_len + st.completion_len) * st.rollouts_at_once * 2
    gathered = 0.0
    if st.rollouts_at_once and st.zero == 3:
        gathered = 2 * n_all - (0 if st.offload else 2 * n_all / w)
    return Estimate(
        st, weights / GB, grads / GB, optimizer / GB, reference / GB, activations / GB, logits / GB, kv / GB,
        gathered / GB, cpu / GB,
    )


def paper_settings(
    gpus: int = 8,
    prompt_tokens: int = 1500,
    completion_tokens: int = 1024,
    sft_max_length: int = 1024,
    sft_micro_batch: int = 4,
    grpo_micro_batch: int = 16,
    grpo_grad_accum: int = 4,
    lora_r: int = 64,
) -> list[Setting]:
    """The paper's two stages (recipes/paper/sft.yaml, grpo.yaml) under each launch config."""
    sft = Setting("SFT LoRA r%d" % lora_r, "sft", 0, lora_r=lora_r, gpus=gpus, micro_batch=sft_micro_batch,
                  seq_len=sft_max_length, logit_tokens=sft_max_length)
    grpo = Setting("GRPO full LM", "grpo", 0, gpus=gpus, micro_batch=grpo_micro_batch,
                   seq_len=prompt_tokens + completion_tokens, logit_tokens=completion_tokens,
                   rollouts_at_once=grpo_micro_batch * grpo_grad_accum, prompt_len=prompt_tokens,
                   completion_len=completion_tokens, reference=True)
    # Same 64 completions per GPU per step, in forwards of half the size: TRL still generates all 64 at once.
    half = grpo_micro_batch // 2
    grpo_half = replace(grpo, zero=2, micro_batch=half,
                        label=f"GRPO full LM, {half}/forward x accum {grpo_grad_accum * 2}")
    return [
        sft, replace(sft, zero=2), replace(sft, zero=3),
        grpo, replace(grpo, zero=2), grpo_half, replace(grpo, zero=3), replace(grpo, zero=3, offload=True),
    ]


def _zero_name(st: Setting) -> str:
    return "DDP" if st.zero == 0 else f"ZeRO-{st.zero}" + (" +offload" if st.offload else "")


def format_table(shape: VLShape, estimates: list[Estimate], gpu_gb: float = 80.0) -> str:
    pc = param_count(shape)
    head = (
        f"{shape.name}: {pc.total:,} parameters (vision {pc.vision:,}, projector {pc.merger:,}, "
        f"language model {pc.language:,}); GB = 1e9 bytes per GPU\n\n"
        "| setting | launch | GPUs | weights | grads | optim | ref | activ. | logits | KV | gathered | train peak "
        f"| gen peak | peak | host RAM/GPU | fits {gpu_gb:g} GB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for e in estimates:
        st = e.setting
        verdict = "yes" if e.peak <= 0.9 * gpu_gb else ("tight" if e.peak <= gpu_gb else "no")
        gen = f"{e.generate_peak:.1f}" if st.rollouts_at_once else "-"
        rows.append(
            f"| {st.label} | {_zero_name(st)} | {st.gpus} | {e.weights:.1f} | {e.grads:.1f} | {e.optimizer:.1f} | "
            f"{e.reference:.1f} | {e.activations:.1f} | {e.logits:.1f} | {e.kv_cache:.1f} | {e.gathered:.1f} | "
            f"{e.train_peak:.1f} | {gen} | {e.peak:.1f} | {e.cpu:.1f} | {verdict} |"
        )
    foot = (
        f"\nyes: peak <= 90% of {gpu_gb:g} GB; tight: within {gpu_gb:g} GB with under 10% to spare; no: over. "
        f"Peak includes {CUDA_OVERHEAD_GB:g} GB for the CUDA context. Activations and logits are estimates "
        "(formulas in migrl/plan.py); parameter counts and AdamW state bytes are exact."
    )
    return head + "\n".join(rows) + "\n" + foot + "\n"


def plan_table(
    model: str = "7b",
    gpus: int = 8,
    gpu_gb: float = 80.0,
    prompt_tokens: int = 1500,
    completion_tokens: int = 1024,
    sft_max_length: int = 1024,
    sft_micro_batch: int = 4,
    grpo_micro_batch: int = 16,
    grpo_grad_accum: int = 4,
    lora_r: int = 64,
) -> str:
    """A markdown table of the paper's settings for one model size ("3b", "7b", "32b", "72b")."""
    if model not in SHAPES:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(SHAPES)}")
    shape = SHAPES[model]
    settings = paper_settings(gpus, prompt_tokens, completion_tokens, sft_max_length, sft_micro_batch,
                              grpo_micro_batch, grpo_grad_accum, lora_r)
    return format_table(shape, [estimate(shape, st) for st in settings], gpu_gb)
