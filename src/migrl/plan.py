"""Per-GPU memory plan for training Qwen2.5-VL and Qwen3-VL (dense and MoE) with TRL + accelerate (DDP or
DeepSpeed ZeRO).

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
             layer being recomputed holds its intermediates and their gradients,
             2 x b x s x (5h + 2 q_dim + 2 kv_dim + m) x 2, q_dim = heads x head_dim (= h in Qwen2.5-VL: 7h),
             m = 4i (gate, up, act, product); MoE: m = k x (4 moe_i + 3h) + 2E (k of E experts per token,
             each with its gathered input, gate/up, act, product, output and weighted output; router logits)
  logits     (estimate) b x t x vocab x c: SFT t = s, c = 10 (bf16 logits, fp32 copy in the loss, fp32 grad);
             GRPO t = completion, c = 6 (bf16 logits, the /temperature copy, grad)
  KV cache   GRPO rollouts: 2 x L x kv_heads x head_dim x (prompt + completion) x sequences x 2 bytes; TRL
             generates per_device_train_batch_size x steps_per_generation sequences per GPU at once
  gathered   ZeRO-3 GRPO: TRL gathers the whole policy for generation (ds3_gather_for_generation=True); for an
             MoE that is every expert, though a token runs through k of them
Peak = max(training phase, generation phase) + a fixed 2 GB for the CUDA context and NCCL buffers.
The frozen vision tower runs without grad, so it stores no activations.

Layouts counted (transformers 5.24 modeling files): Qwen2.5-VL decoder layers have q/k/v bias; Qwen3-VL's
(``modeling_qwen3_vl.py``) have none but q_norm / k_norm over each head, and head_dim comes from the config
(Qwen3-VL-30B-A3B: 32 heads x 128 = 4096 != hidden 2048). The Qwen3-VL vision tower adds a Conv3d bias, a
learned position embedding (``pos_embed``, num_position_embeddings rows), LayerNorms and an ungated MLP, and
one deepstack merger per ``deepstack_visual_indexes`` entry beside the final merger. In Qwen3-VL-MoE
(``modeling_qwen3_vl_moe.py``) a sparse layer's MLP is a router (``mlp.gate``, E x h) and E experts stored as
two fused 3-D parameters (``mlp.experts.gate_up_proj``, ``down_proj``), no shared expert.

ZeRO-3 with the MoE (the table's caveat line): every expert is in memory and in TRL's gathered copy (TRL
GRPOConfig ``ds3_gather_for_generation``: "the policy model weights are gathered for generation ... disabling
this option allows training models that exceed the VRAM capacity of a single GPU, albeit at the cost of slower
generation ... not compatible with vLLM generation"); the fused experts module runs in every forward, so
ZeRO-3 gathers all E experts of a layer whichever the router picks. DeepSpeed's tool for MoE blocks under
ZeRO-3 is ``deepspeed.utils.set_z3_leaf_modules`` (github.com/deepspeedai/DeepSpeed/pull/4966: "ZeRO3 does not
work with MoE models because the order of executing modules can change at every forward/backward pass");
LlamaFactory (src/llamafactory/model/model_utils/moe.py) registers ``Qwen3VLMoeTextSparseMoeBlock`` with it.
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
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def is_sparse(self, layer: int) -> bool:
        """Whether decoder layer ``layer`` is a mixture of experts (only in Qwen3VLMoeShape)."""
        return False

    @property
    def mlp_activation_width(self) -> int:
        """Per token, the MLP values a recomputed layer holds (estimate): gate, up, act, product."""
        return 4 * self.intermediate


@dataclass(frozen=True)
class Qwen3VLShape(VLShape):
    """A Qwen3-VL (dense) model: Qwen3 decoder layers (q_norm / k_norm, no q/k/v bias, head_dim from the
    config) and the Qwen3-VL vision tower (patch 16, learned position embedding, deepstack mergers). The
    defaults are the vision tower of Qwen3-VL-8B and -30B-A3B (also Qwen3VLVisionConfig's defaults)."""

    vision_depth: int = 27
    vision_hidden: int = 1152
    vision_intermediate: int = 4304
    patch: int = 16
    head_size: int = 128  # text_config.head_dim
    position_embeddings: int = 2304  # vision_config.num_position_embeddings
    deepstack: tuple[int, ...] = (8, 16, 24)  # vision_config.deepstack_visual_indexes: one merger each

    @property
    def head_dim(self) -> int:
        return self.head_size


@dataclass(frozen=True)
class Qwen3VLMoeShape(Qwen3VLShape):
    """A Qwen3-VL-MoE model: each sparse layer routes a token to ``experts_per_token`` of ``experts`` experts
    of width ``moe_intermediate``; layers in ``mlp_only_layers`` (or off ``sparse_step``) keep a dense MLP of
    width ``intermediate``, as Qwen3VLMoeTextDecoderLayer decides."""

    experts: int = 128
    experts_per_token: int = 8
    moe_intermediate: int = 768
    mlp_only_layers: tuple[int, ...] = ()
    sparse_step: int = 1  # text_config.decoder_sparse_step

    def is_sparse(self, layer: int) -> bool:
        return layer not in self.mlp_only_layers and self.experts > 0 and (layer + 1) % self.sparse_step == 0

    @property
    def expert_params(self) -> int:
        """One expert: gate and up (fused gate_up_proj) and down, no bias."""
        return 3 * self.hidden * self.moe_intermediate

    @property
    def mlp_activation_width(self) -> int:
        routed = self.experts_per_token * (4 * self.moe_intermediate + 3 * self.hidden) + 2 * self.experts
        dense = any(not self.is_sparse(i) for i in range(self.layers))
        return max(routed, 4 * self.intermediate if dense else 0)


_Q3_VISION = "vision 27 x 1152, 4304, 16 heads, patch 16, 2304 positions, deepstack [8, 16, 24]"

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
    "qwen3-vl-8b": Qwen3VLShape(
        "Qwen3-VL-8B", hidden=4096, layers=36, heads=32, kv_heads=8, intermediate=12288, vocab=151936, tied=False,
        source="Qwen/Qwen3-VL-8B-Instruct config.json, not read from the Hub itself: as copied in "
        "github.com/jax-ml/bonsai bonsai/models/qwen3_vl/modeling.py Qwen3VLConfig.qwen3vl_8b (4096 x 36, "
        "12288, 32/8 heads, head_dim 128, vocab 151936, untied; " + _Q3_VISION + ") and, field for field, in "
        "a port's dict that quotes the file as 'Qwen/Qwen3-VL-8B-Instruct's own public config.json' (its "
        "repository not named by the search); the total, 8,767,123,696, is the 8.77B of LM Studio's model page "
        "(as github.com/EduardoNicacio/LLMBenchmark qwen3-VL-8b/readme.md quotes it)",
    ),
    "qwen3-vl-30b-a3b": Qwen3VLMoeShape(
        "Qwen3-VL-30B-A3B", hidden=2048, layers=48, heads=32, kv_heads=4, intermediate=6144, vocab=151936,
        tied=False,
        source="Qwen/Qwen3-VL-30B-A3B-Instruct config.json, not read from the Hub itself: as transcribed in a "
        "port's test (repository not named by the search; 'transcribed byte-for-byte from the fetched file at "
        "commit 1fc78ad': 2048 x 48, 32/4 heads, head_dim 128, "
        "intermediate 6144, 128 experts, 8 per token, moe_intermediate 768, decoder_sparse_step 1, "
        "mlp_only_layers [], vocab 151936, untied; " + _Q3_VISION + ", out 2048; the vision sizes are also "
        "transformers' Qwen3VLMoeVisionConfig defaults, documented for this checkpoint); the language sizes also "
        "in github.com/haod0ng/Agentic-MLLM-RL scripts/models/qwen3-vl-30B-A3B.sh (48 MoE layers, "
        "--untie-embeddings-and-output-weights); the total, 31,070,754,032, is the 31.07B model listings give "
        "(free2aitools.com/model/qwen/qwen3-vl-30b-a3b-instruct; haimaker.ai: 31.1B)",
    ),
}


def shape_from_config(config, name: str = "custom") -> VLShape:
    """A shape from a transformers Qwen2.5-VL, Qwen3-VL or Qwen3-VL-MoE config (a model folder's, the tiny
    factory's)."""
    t, v = config.text_config, config.vision_config
    common = dict(
        hidden=t.hidden_size, layers=t.num_hidden_layers, heads=t.num_attention_heads,
        kv_heads=t.num_key_value_heads, intermediate=t.intermediate_size, vocab=t.vocab_size,
        vision_depth=v.depth, vision_hidden=v.hidden_size, vision_intermediate=v.intermediate_size,
        vision_heads=v.num_heads, patch=v.patch_size, temporal_patch=v.temporal_patch_size,
        in_channels=v.in_channels, merge=v.spatial_merge_size,
    )
    if config.model_type not in ("qwen3_vl", "qwen3_vl_moe"):
        tied = bool(getattr(config, "tie_word_embeddings", False) or getattr(t, "tie_word_embeddings", False))
        return VLShape(name, tied=tied, **common)
    # Only the top-level flag ties lm_head (PreTrainedModel reads self.config); the MoE text config's own
    # tie_word_embeddings defaults to True even where the model is untied.
    qwen3 = dict(common, tied=bool(config.tie_word_embeddings), head_size=t.head_dim,
                 position_embeddings=v.num_position_embeddings, deepstack=tuple(v.deepstack_visual_indexes))
    if config.model_type == "qwen3_vl":
        return Qwen3VLShape(name, **qwen3)
    return Qwen3VLMoeShape(
        name, **qwen3, experts=t.num_experts, experts_per_token=t.num_experts_per_tok,
        moe_intermediate=t.moe_intermediate_size, mlp_only_layers=tuple(t.mlp_only_layers),
        sparse_step=t.decoder_sparse_step,
    )


def to_config(shape: VLShape):
    """A transformers config of this shape (random weights; used to check the counts)."""
    if isinstance(shape, Qwen3VLShape):
        return _qwen3_config(shape)
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


def _qwen3_config(shape: Qwen3VLShape):
    """A Qwen3VLConfig, or a Qwen3VLMoeConfig for an MoE shape."""
    from transformers import Qwen3VLConfig, Qwen3VLMoeConfig

    half, part = shape.head_dim // 2, shape.head_dim * 5 // 32  # the released [24, 20, 20] for head_dim 128
    rope = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [half - 2 * part, part, part],
            "mrope_interleaved": True}
    text = dict(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim, rope_parameters=rope, pad_token_id=None,
    )
    vision = dict(
        depth=shape.vision_depth, hidden_size=shape.vision_hidden, intermediate_size=shape.vision_intermediate,
        num_heads=shape.vision_heads, out_hidden_size=shape.hidden, patch_size=shape.patch,
        temporal_patch_size=shape.temporal_patch, in_channels=shape.in_channels, spatial_merge_size=shape.merge,
        num_position_embeddings=shape.position_embeddings, deepstack_visual_indexes=list(shape.deepstack),
    )
    if not isinstance(shape, Qwen3VLMoeShape):
        return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=shape.tied)
    text |= dict(num_experts=shape.experts, num_experts_per_tok=shape.experts_per_token,
                 moe_intermediate_size=shape.moe_intermediate, mlp_only_layers=list(shape.mlp_only_layers),
                 decoder_sparse_step=shape.sparse_step, tie_word_embeddings=shape.tied)
    return Qwen3VLMoeConfig(text_config=text, vision_config=vision, tie_word_embeddings=shape.tied)


@dataclass(frozen=True)
class ParamCount:
    """Parameters and parameter tensors (AdamW keeps one step counter per tensor)."""

    vision: int  # patch embedding (+ Qwen3-VL's position embedding) + blocks
    merger: int  # the projector: the merger (+ Qwen3-VL's deepstack mergers)
    language: int  # embeddings + decoder layers + final norm + lm_head (when not tied)
    vision_tensors: int
    language_tensors: int
    idle: int = 0  # MoE: the weights of the experts a token is not routed to, in every sparse layer

    @property
    def total(self) -> int:
        return self.vision + self.merger + self.language

    @property
    def tensors(self) -> int:
        return self.vision_tensors + self.language_tensors

    @property
    def active(self) -> int:
        """Parameters one token runs through; memory still holds ``total``."""
        return self.total - self.idle


def _vision_count(s: VLShape) -> tuple[int, int, int]:
    """(vision tower, projector, their tensors)."""
    vh, vi = s.vision_hidden, s.vision_intermediate
    patch = s.in_channels * s.temporal_patch * s.patch * s.patch * vh  # Conv3d weight
    attention = (3 * vh * vh + 3 * vh) + (vh * vh + vh)  # qkv and proj, both with bias
    m = vh * s.merge * s.merge  # a merger concatenates merge x merge patches
    fcs = (m * m + m) + (m * s.hidden + s.hidden)
    if not isinstance(s, Qwen3VLShape):
        block = 2 * vh + attention + 2 * (vh * vi + vi) + (vi * vh + vh)  # RMSNorms, gated MLP with bias
        return patch + s.vision_depth * block, vh + fcs, 1 + 12 * s.vision_depth + 5
    # Qwen3-VL: Conv3d bias, learned positions, LayerNorms (weight + bias), an ungated fc1/fc2 MLP.
    block = 4 * vh + attention + (vh * vi + vi) + (vi * vh + vh)
    tower = patch + vh + s.position_embeddings * vh + s.vision_depth * block
    # The final merger normalises each patch (LayerNorm over vh), a deepstack merger the concatenation (over m).
    mergers = (2 * vh + fcs) + len(s.deepstack) * (2 * m + fcs)
    return tower, mergers, 3 + 12 * s.vision_depth + 6 * (1 + len(s.deepstack))


def layer_linears(s: VLShape, layer: int) -> dict[str, tuple[int, int]]:
    """(in, out) of each nn.Linear of one decoder layer: the modules LANGUAGE_MODEL_LINEARS gives LoRA. A sparse
    layer has q/k/v/o only: its experts are fused 3-D parameters, not Linear modules, and its router is
    named ``gate``, which the regex's ``gate_proj`` does not match (checked against PEFT in the tests)."""
    h, q, kv, i = s.hidden, s.q_dim, s.kv_dim, s.intermediate
    linears = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h)}
    if not s.is_sparse(layer):
        linears |= {"gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return linears


def _layer_count(s: VLShape, layer: int) -> tuple[int, int]:
    """(parameters, tensors) of one decoder layer."""
    linears = layer_linears(s, layer)
    params, tensors = sum(a * b for a, b in linears.values()) + 2 * s.hidden, len(linears) + 2  # + 2 RMSNorms
    if isinstance(s, Qwen3VLShape):
        params, tensors = params + 2 * s.head_dim, tensors + 2  # q_norm, k_norm; no bias
    else:
        params, tensors = params + s.q_dim + 2 * s.kv_dim, tensors + 3  # q/k/v bias, o_proj none
    if isinstance(s, Qwen3VLMoeShape) and s.is_sparse(layer):
        params, tensors = params + s.experts * (s.hidden + s.expert_params), tensors + 3  # router, 2 expert tensors
    return params, tensors


def param_count(s: VLShape) -> ParamCount:
    vision, merger, vision_tensors = _vision_count(s)
    layers = [_layer_count(s, i) for i in range(s.layers)]
    heads = 1 if s.tied else 2  # embed_tokens, and lm_head unless tied
    idle = 0
    if isinstance(s, Qwen3VLMoeShape):
        sparse = sum(s.is_sparse(i) for i in range(s.layers))
        idle = sparse * (s.experts - s.experts_per_token) * s.expert_params
    return ParamCount(
        vision=vision, merger=merger, language=heads * s.vocab * s.hidden + sum(p for p, _ in layers) + s.hidden,
        vision_tensors=vision_tensors, language_tensors=heads + sum(t for _, t in layers) + 1, idle=idle,
    )


def lora_count(s: VLShape, r: int) -> tuple[int, int]:
    """(parameters, tensors) of LoRA rank r on the language model's Linear layers that LANGUAGE_MODEL_LINEARS
    matches: q/k/v/o/gate/up/down of every layer (q/k/v/o only in an MoE's sparse layers)."""
    linears = [shape for i in range(s.layers) for shape in layer_linears(s, i).values()]
    return r * sum(a + b for a, b in linears), 2 * len(linears)


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
    recomputed = 5 * h + 2 * shape.q_dim + 2 * shape.kv_dim + shape.mlp_activation_width  # per token, one layer
    activations = shape.layers * b * s * h * 2 + 2 * b * s * recomputed * 2
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
        f"language model {pc.language:,}){_moe_note(shape, pc)}; GB = 1e9 bytes per GPU\n\n"
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
    return head + "\n".join(rows) + "\n" + foot + _moe_lines(shape, pc) + "\n"


def _moe_note(shape: VLShape, pc: ParamCount) -> str:
    """The header's count of what one token runs through, for an MoE."""
    if not isinstance(shape, Qwen3VLMoeShape):
        return ""
    return f", {pc.active:,} active per token ({shape.experts_per_token} of {shape.experts} experts)"


def _moe_lines(shape: VLShape, pc: ParamCount) -> str:
    """After an MoE's table: what LoRA reaches, and the ZeRO-3 caveat (sources in the module docstring)."""
    if not isinstance(shape, Qwen3VLMoeShape):
        return ""
    layer = shape.experts * shape.expert_params
    sparse = sum(shape.is_sparse(i) for i in range(shape.layers))
    dense = shape.layers - sparse
    also = f", and q/k/v/o/gate/up/down_proj in the {dense} dense ones" if dense else ""
    lora = (
        f"LoRA (LANGUAGE_MODEL_LINEARS) reaches q/k/v/o_proj in the {sparse} sparse layers and no expert{also}: "
        "transformers stores a layer's experts as fused 3-D parameters (Qwen3VLMoeTextExperts), not Linear "
        "modules, and the router (mlp.gate) is not gate_proj."
    )
    zero3 = (
        f"ZeRO-3 caveat (MoE): memory holds all {shape.experts} experts of every layer ({pc.total:,} parameters, "
        f"{2 * pc.total / GB:.1f} GB in bf16), though a token runs through {shape.experts_per_token}. TRL's GRPO "
        "gathers the whole policy on every GPU to generate (ds3_gather_for_generation=True, its default: the "
        "gathered column); False generates from the shards, slower, and not with vLLM. The fused experts module "
        f"runs in every forward, so ZeRO-3 gathers all {shape.experts} of a layer ({layer:,} parameters, "
        f"{2 * layer / GB:.2f} GB in bf16) whichever the router picks. For MoE blocks DeepSpeed provides "
        "deepspeed.utils.set_z3_leaf_modules (DeepSpeed PR #4966: ZeRO-3 does not work with MoE models whose "
        "module order changes between passes); LlamaFactory registers Qwen3VLMoeTextSparseMoeBlock with it."
    )
    return f"\n\n{lora}\n\n{zero3}"


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
    """A markdown table of the paper's settings for one model size: "3b", "7b", "32b", "72b" (Qwen2.5-VL),
    "qwen3-vl-8b", "qwen3-vl-30b-a3b" (Qwen3-VL, dense and MoE)."""
    if model not in SHAPES:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(SHAPES)}")
    shape = SHAPES[model]
    settings = paper_settings(gpus, prompt_tokens, completion_tokens, sft_max_length, sft_micro_batch,
                              grpo_micro_batch, grpo_grad_accum, lora_r)
    return format_table(shape, [estimate(shape, st) for st in settings], gpu_gb)
