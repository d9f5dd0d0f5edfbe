"""Alignment: SFT, LoRA/QLoRA adapters, DPO and reward models, through pretraining's Trainer.

    data.py     chat and preference JSONL, validated line by line; --data resolution
    batches.py  the loss mask, packing into seq_len windows, preference-pair batches
    recipe.py   sft / dpo / reward recipes (optim, train, lora, dpo sections)
    lora.py     peft LoRA on Quark's LLM: add, save (PEFT layout), merge; NF4 base for QLoRA
    run.py      one run of any kind: resolve, train, checkpoint, resume, publish with card.md
    policy.py   the LLM an SFT/DPO run trains (full or adapters) and how it is published
    sft.py      supervised fine-tuning; held-out <|end|> rate
    dpo.py      direct preference optimisation against the frozen starting policy
    reward.py   a scalar reward head, Bradley–Terry loss, and scoring
"""
