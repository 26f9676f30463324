"""What the training stages (``migrl sft``, ``migrl grpo``) share around TRL's trainers.

- ``checkpoints``: which ``checkpoint-N`` a rerun resumes from; a full fine-tune's weights loaded on resume.
- ``finish``: the ranks' weights compared, the final folder written once.
- ``sft_loss``: SFT's logits and loss at the trained positions only.
- a GRPO group's shared prompt and images computed once: ``grpo_packing`` (pure tensor packing),
  ``vision_dedup`` (each distinct image through the vision tower and the image processor once) and
  ``grpo_sharing`` (the trainer mixin wiring both into TRL's GRPOTrainer).
"""
