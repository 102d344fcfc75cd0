"""The supervised fine-tuning loop, on accelerate (one code path for a laptop CPU, DDP, DeepSpeed ZeRO and FSDP).

Loss: summed token cross-entropy over the assistant tokens of a whole optimizer step (all micro-batches,
all processes), divided by the number of those tokens. Every process can count them because every process
builds the same batch plan, so no extra communication is needed, and the loss does not depend on how the
global batch is split across processes or micro-batches (padding aside)."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from ming import envs, models
from ming.engine import threads
from ming.errors import MingError
from ming.train import checkpoint, collate, dataset
from ming.train import config as train_config
from ming.train import model as train_model
from ming.train.config import TrainConfig
from ming.train.log import LossLog, peak_rss_mb


def _threads(cfg: TrainConfig) -> int:
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return threads.configure(cfg.threads or envs.threads() or max(1, threads.default_threads() // local_world),
                             wait_policy=threads.WAIT_POLICY)


def _plans(cfg: TrainConfig, lengths, world: int, epoch: int):
    """Global micro-batches of an epoch, cut to whole optimizer steps, each with at least one row per process."""
    batches = collate.plan(lengths, cfg.batch_size * world, seed=cfg.seed, epoch=epoch,
                           group_by_length=cfg.group_by_length, packing_len=cfg.max_len if cfg.packing else None)
    batches = [b for b in batches if len(b) >= world]
    return batches[:len(batches) - len(batches) % cfg.grad_accum]


def _keep_mask_supported() -> bool:
    """transformers >= 5 computes logits only at the positions of a boolean `logits_to_keep` mask."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401
    except ImportError:
        return False
    return True


def _ce_sum(model, batch, accelerator):
    """Summed cross-entropy over the supervised tokens. Logits are computed only where a target follows (the
    vocabulary projection of a 150k-token vocabulary is a large part of the cost), when transformers can."""
    import torch
    import torch.nn.functional as F

    inputs = {"input_ids": batch["input_ids"].to(accelerator.device), "use_cache": False}
    if batch.get("attention_mask") is not None:
        inputs["attention_mask"] = batch["attention_mask"].to(accelerator.device)
    if "position_ids" in batch and batch.get("attention_mask") is None:
        inputs["position_ids"] = batch["position_ids"].to(accelerator.device)
    labels = batch["labels"].to(accelerator.device)
    if _keep_mask_supported():
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != -100
        with accelerator.autocast():
            logits = model(**inputs, logits_to_keep=keep).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels[:, 1:][keep[:, :-1]],
                               reduction="sum")
    with accelerator.autocast():
        logits = model(**inputs).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
                           reduction="sum")


def evaluate(model, samples, cfg: TrainConfig, accelerator, pad_id: int) -> float:
    """Token-weighted mean loss over the eval samples (every process runs the same number of batches)."""
    import torch

    world, rank = accelerator.num_processes, accelerator.process_index
    lengths = [len(s) for s in samples]
    batches = collate.plan(lengths, cfg.eval_batch_size * world, seed=0, epoch=0, shuffle=False)
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with torch.no_grad():
        for b in batches:
            rows = collate.shard(b, rank, world)
            weight = 1.0
            if not rows:  # keep collective ops in step: run a dummy row that counts for nothing
                rows, weight = [[0]], 0.0
            batch = collate.collate(rows, samples, pad_id)
            total[0] += weight * _ce_sum(model, batch, accelerator).double()
            total[1] += weight * collate.batch_targets(rows, samples)
    total = accelerator.reduce(total, reduction="sum")
    if was_training:
        model.train()
    return float(total[0] / total[1])


def train(cfg: TrainConfig) -> dict:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed
    from tqdm import tqdm
    from transformers import get_scheduler

    t_start = time.time()
    device = models.pick_device(cfg.device)
    precision = train_model.mixed_precision(cfg.dtype, device)
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum)
    main = accelerator.is_main_process
    n_threads = _threads(cfg) if device == "cpu" else None
    world, rank = accelerator.num_processes, accelerator.process_index
    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    out = Path(cfg.output)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        print("[ming] resolved training config:\n" + train_config.to_yaml(cfg), file=sys.stderr, end="")
        train_config.save(cfg, out)
    set_seed(cfg.seed)

    loaded = train_model.load(cfg, device)
    model, tok, template = loaded.model, loaded.tokenizer, loaded.template
    if cfg.conv_template is None and main:  # record the detected template: chat uses it for this output
        cfg.conv_template = template.name
        train_config.save(cfg, out)
    if cfg.packing and not train_model.supports_packing(model):
        raise MingError(f"--packing needs a model that takes position ids; {type(model).__name__} "
                        "(ALiBi, e.g. Bloom) does not. Drop --packing: dynamic padding with length-grouped batches "
                        "is as fast on CPU.")
    system = dataset.system_message(cfg.system, template)
    samples, report = dataset.load(cfg.data_files(), template, cfg.max_len, system, cfg.truncation,
                                   cfg.max_dropped_fraction)
    eval_samples, eval_report = [], None
    if cfg.eval_files():
        eval_samples, eval_report = dataset.load(cfg.eval_files(), template, cfg.max_len, system, cfg.truncation,
                                                 1.0, what="eval")
    pad_id = tok.pad_token_id
    lengths = [len(s) for s in samples]
    if main:
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        print(f"[ming] model {loaded.base_spec} · template {template.name} · method {cfg.method} · trainable "
              f"{n_train / 1e6:.2f}M of {n_all / 1e6:.1f}M params · {world} process(es) on {device}"
              f" · precision {precision}" + (f" · {n_threads} thread(s)/process" if n_threads else ""), file=sys.stderr)
        print(f"[ming] train data: {report.summary()}", file=sys.stderr)
        if report.read_errors.get("examples"):
            print("[ming] bad rows (first): " + "; ".join(report.read_errors["examples"][:5]), file=sys.stderr)
        if eval_report:
            print(f"[ming] eval data: {eval_report.summary()}", file=sys.stderr)

    # -- schedule --------------------------------------------------------------------------------
    steps_per_epoch = len(_plans(cfg, lengths, world, 0)) // cfg.grad_accum
    if steps_per_epoch == 0:
        raise MingError(f"{len(samples)} samples do not fill one optimizer step of {cfg.batch_size} x {world} "
                        f"process(es) x {cfg.grad_accum} accumulation; lower --batch-size or --grad-accum")
    total_steps = cfg.max_steps if cfg.max_steps > 0 else steps_per_epoch * cfg.epochs
    warmup = int(math.ceil(cfg.warmup_ratio * total_steps))

    params = [p for p in model.parameters() if p.requires_grad]
    if accelerator.distributed_type == DistributedType.FSDP:
        model = accelerator.prepare(model)
        params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = cfg.batch_size
    if accelerator.distributed_type == DistributedType.FSDP:
        optimizer = accelerator.prepare(optimizer)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)

    step, epoch, mb_pos = 0, 0, 0
    if cfg.resume:
        path = checkpoint.find(cfg.resume, out)
        st = checkpoint.load(accelerator, model, optimizer, scheduler, path, sharded)
        step, epoch, mb_pos = int(st["step"]), int(st["epoch"]), int(st["micro_batch"])
        if main:
            print(f"[ming] resumed from {path} (step {step}, epoch {epoch}, micro-batch {mb_pos})", file=sys.stderr)
    log = LossLog(out, enabled=main, keep_until_step=step if cfg.resume else None)

    summary: dict = {"data": report.to_dict(), "steps": total_steps, "processes": world, "precision": precision}
    if eval_samples and step == 0:
        summary["eval_loss_before"] = evaluate(model, eval_samples, cfg, accelerator, pad_id)
        log.write({"kind": "eval", "step": 0, "eval_loss": round(summary["eval_loss_before"], 6)})
        if main:
            print(f"[ming] eval loss before training: {summary['eval_loss_before']:.4f}", file=sys.stderr)

    model.train()
    bar = tqdm(total=total_steps, initial=step, disable=not main, desc="train", unit="step", dynamic_ncols=True)
    t0, tokens_seen, step0 = time.time(), 0, step
    last_loss = None
    while step < total_steps:
        batches = _plans(cfg, lengths, world, epoch)
        for w in range(mb_pos // cfg.grad_accum, len(batches) // cfg.grad_accum):
            window = batches[w * cfg.grad_accum:(w + 1) * cfg.grad_accum]
            n_targets = sum(collate.batch_targets(b, samples) for b in window)
            loss_sum = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
            grad_norm = None
            for b in window:
                rows = collate.shard(b, rank, world)
                batch = collate.collate(rows, samples, pad_id, packing=cfg.packing,
                                        pad_to=cfg.max_len if cfg.padding == "max" else None)
                with accelerator.accumulate(model):
                    ce = _ce_sum(model, batch, accelerator)
                    accelerator.backward(ce / n_targets * world * cfg.grad_accum)
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        grad_norm = accelerator.clip_grad_norm_(params if not sharded else model.parameters(),
                                                                cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                loss_sum[0] += ce.detach().double()
                loss_sum[1] += batch["real_tokens"]
            scheduler.step()
            step += 1
            loss_sum = accelerator.reduce(loss_sum, reduction="sum")
            last_loss = float(loss_sum[0]) / n_targets
            tokens_seen += int(loss_sum[1])
            elapsed = time.time() - t0
            if main and (step % cfg.logging_steps == 0 or step == total_steps):
                row = {"kind": "train", "step": step, "epoch": epoch, "loss": round(last_loss, 6),
                       "lr": scheduler.get_last_lr()[0], "tokens": tokens_seen,
                       "tok_per_s": round(tokens_seen / max(elapsed, 1e-9), 1), "elapsed_s": round(elapsed, 2)}
                if grad_norm is not None:
                    row["grad_norm"] = round(float(grad_norm), 4)
                log.write(row)
            bar.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{tokens_seen / max(elapsed, 1e-9):.0f}")
            bar.update(1)
            if cfg.eval_steps and eval_samples and step % cfg.eval_steps == 0 and step < total_steps:
                ev = evaluate(model, eval_samples, cfg, accelerator, pad_id)
                log.write({"kind": "eval", "step": step, "eval_loss": round(ev, 6)})
                bar.write(f"[ming] step {step}: eval loss {ev:.4f}")
            if cfg.save_steps and step % cfg.save_steps == 0 and step < total_steps:
                pos = (w + 1) * cfg.grad_accum
                st = {"step": step, "epoch": epoch, "micro_batch": pos, "seed": cfg.seed}
                if pos >= len(batches):
                    st.update(epoch=epoch + 1, micro_batch=0)
                checkpoint.save(accelerator, model, optimizer, scheduler, st, out, sharded, cfg.save_total_limit)
            if step >= total_steps:
                break
        epoch += 1
        mb_pos = 0
    bar.close()
    train_time = time.time() - t0

    if eval_samples:
        summary["eval_loss_after"] = evaluate(model, eval_samples, cfg, accelerator, pad_id)
        log.write({"kind": "eval", "step": step, "eval_loss": round(summary["eval_loss_after"], 6)})
    save_final(accelerator, model, tok, out, cfg, sharded)
    summary.update({"final_loss": last_loss, "step": step, "train_seconds": round(train_time, 1),
                    "tokens": tokens_seen, "tok_per_s": round(tokens_seen / max(train_time, 1e-9), 1),
                    "steps_run": step - step0, "peak_rss_mb": round(peak_rss_mb(), 0),
                    "total_seconds": round(time.time() - t_start, 1), "template": template.name,
                    "base_model": loaded.base_spec})
    if eval_report:
        summary["eval_data"] = eval_report.to_dict()
    if main:
        import json

        (out / "train_summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
        ev = ""
        if "eval_loss_after" in summary:
            before = summary.get("eval_loss_before")
            ev = f" · eval loss {before:.4f} -> {summary['eval_loss_after']:.4f}" if before is not None else \
                f" · eval loss {summary['eval_loss_after']:.4f}"
        print(f"[ming] done: {step} steps, final train loss {last_loss:.4f}{ev} · {summary['tok_per_s']} tok/s · "
              f"peak RSS {summary['peak_rss_mb']:.0f} MB · saved to {out}", file=sys.stderr)
    log.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def save_final(accelerator, model, tok, out: Path, cfg: TrainConfig, sharded: bool) -> None:
    """The result: a LoRA adapter (adapter_config.json points at a base ming can load) or a full checkpoint,
    plus the tokenizer, so that `ming chat --model-path OUT` works."""
    state = accelerator.get_state_dict(model) if sharded else None
    unwrapped = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        if cfg.method == "full":
            unwrapped.config.use_cache = True
        kw = {"state_dict": state} if state is not None else {}
        unwrapped.save_pretrained(str(out), safe_serialization=True, **kw)
        tok.save_pretrained(str(out))
    accelerator.wait_for_everyone()
