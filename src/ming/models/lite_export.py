"""Turn a `ming train` LoRA run into the shipped MING-lite adapter: bf16 safetensors (half the size of the
trained fp32 file, the precision it was trained in under autocast), an adapter_config.json whose base is the
embedded model, the resolved training settings, and a model card filled from the run's own records
(data stats of `ming data build`, train_summary.json) plus the evaluation table when one is given.

    python -m ming.models.lite_export --train runs/ming-lite/train --data runs/ming-lite/data \\
        [--compare runs/ming-lite/compare.md] [--out src/ming/lite/adapter]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ming.errors import MingError
from ming.lite import ADAPTER_DIR


def export_adapter(train_dir: Path, out: Path) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    src = train_dir / "adapter_model.safetensors"
    if not src.is_file():
        raise MingError(f"{train_dir} has no adapter_model.safetensors: has `ming train` finished there?")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(str(src)).items()}
    tmp = out / "adapter_model.safetensors.part"
    save_file(tensors, str(tmp), metadata={"format": "pt", "producer": "ming.models.lite_export"})
    tmp.replace(out / "adapter_model.safetensors")
    cfg = json.loads((train_dir / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "embedded"
    cfg["inference_mode"] = True
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    for name in ("train_config.yaml",):
        if (train_dir / name).is_file():
            shutil.copyfile(train_dir / name, out / name)
    n_params = sum(t.numel() for t in tensors.values())
    return {"params": n_params, "bytes": (out / "adapter_model.safetensors").stat().st_size,
            "r": cfg.get("r"), "alpha": cfg.get("lora_alpha"), "targets": cfg.get("target_modules")}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def model_card(train_dir: Path, data_dir: Path, adapter: dict, compare_md: str | None) -> str:
    summ = json.loads((train_dir / "train_summary.json").read_text())
    stats = json.loads((data_dir / "stats.json").read_text()) if (data_dir / "stats.json").is_file() else {}
    lines = ["# MING-lite", "",
             "A LoRA adapter for the embedded base model (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, Apache-2.0) "
             "trained by ming's own pipeline on a 2-core CPU, towards a Chinese medical assistant in MING's "
             "style. It was trained on medical QA, exam questions answered with the letter and a short reason "
             "(`答案：B（…）` + `理由：`), and consultations whose doctor asks at most two questions per turn and "
             "that end with an assessment, advice and when to see a doctor (【初步判断】/【建议】/【何时就医】).", "",
             "**Research use only.** Several training sources are research-only or non-commercial (below), so this "
             "adapter is too. It is not a medical device; its answers can be wrong and never replace a doctor. "
             "ming's runtime safety layer (emergency escalation, disclaimers) stays on in `ming chat` and `ming serve`.",
             "", "## Use", "", "```bash", "ming chat --model ming-lite   # MING-lite (this adapter on the embedded 0.5B, llama.cpp)",
             "ming chat --model 0.5b        # its untouched base model", "```", "",
             "## Adapter", "",
             f"- LoRA rank {adapter['r']}, alpha {adapter['alpha']}, on {', '.join(sorted(adapter['targets'] or []))} "
             f"of all 24 layers: {adapter['params'] / 1e6:.2f}M parameters, stored in bf16 "
             f"({adapter['bytes'] / 1e6:.1f} MB, `adapter_model.safetensors`).",
             "- On llama.cpp (the default CPU engine) ming converts it once to a GGUF LoRA in its cache "
             "(`ming.models.lora_gguf`) and runs base + adapter; on transformers it loads with PEFT.", ""]
    d = summ.get("data", {})
    lines += ["## Training", "",
              f"- Recipe: `configs/data/ming-lite.yaml` (data) + `configs/train/ming-lite.yaml` (training); "
              f"`bash scripts/ming_lite.sh` reproduces it from scratch and resumes when interrupted.",
              f"- {summ.get('steps')} optimizer steps, 1 epoch, {summ.get('processes', 1)} process on CPU, precision "
              f"{summ.get('precision')}; {d.get('samples')} samples, {d.get('tokens')} tokens of which "
              f"{d.get('supervised_tokens')} supervised (assistant turns only).",
              f"- Time: {summ.get('train_seconds', 0) / 3600:.2f} h of training "
              f"({summ.get('total_seconds', 0) / 3600:.2f} h with loading and evaluation), "
              f"{summ.get('tok_per_s')} tokens/s, peak RSS {summ.get('peak_rss_mb', 0) / 1024:.1f} GB.",
              f"- Dev loss (held-out records of the same mix): {summ.get('eval_loss_before', float('nan')):.4f} → "
              f"{summ.get('eval_loss_after', float('nan')):.4f}.", ""]
    if stats:
        mix, plan, total = stats["mix"], stats["plan"], stats["mix"]["total"]
        lines += ["## Data mix actually used", "",
                  f"{total} records ({mix['splits'].get('train')} train, {mix['splits'].get('dev')} dev), built by "
                  f"`ming data build` from the train splits in `../shared/data`.", "",
                  "| category | records | share | MING's share |", "|---|---:|---:|---:|"]
        for c, v in plan["categories"].items():
            n = mix["category"].get(c, 0)
            lines.append(f"| {c} | {n} | {_pct(n / total)} | {_pct(v['share'])} |")
        lines += ["", "| source | records | licence |", "|---|---:|---|"]
        for name, n in sorted(mix["source"].items(), key=lambda kv: -kv[1]):
            src = stats["sources"].get(name, {})
            lines.append(f"| {src.get('subset', '?')} / {name} | {n} | {src.get('licence') or '—'} |")
        lines += ["", "Every dev / test_public file of `../shared/data` and the safety benchmark "
                  "(safety_zh/cmtmedqa_safety) were in the decontamination index "
                  f"({stats['dedup']['eval_contaminated']} training candidates dropped as too close to an eval "
                  "item; the audit of the output found 0); huatuo26m_qa/train (cut from Huatuo-26M's test file) "
                  "was not used.", ""]
    if compare_md:
        lines += ["## Evaluation: base vs MING-lite", "", compare_md.strip(), ""]
    lines += ["## Limitations", "",
              "- A 0.5B code model adapted with about an hour of CPU training on ~2k records: it learns MING's "
              "answer formats and some medical phrasing, not medical knowledge at scale. Exam accuracy stays "
              "close to chance; see the evaluation above for where it got better and where worse.",
              "- What it learned and what it did not: the exam answer format (`答案：X（…）`) is learned; short "
              "doctor-style answers are learned, including the habit of real online doctors of naming a drug "
              "(e.g. an antibiotic) without an examination; the consultation format (one focused question per "
              "turn, then a structured assessment) is only weakly learned from ~300 consultations in one epoch: "
              "it often answers at once instead of asking.",
              "- Greedy decoding (temperature 0) can fall into repetition loops on open questions; `ming chat` "
              "samples (temperature 0.7, top-p 0.9) by default.",
              "- Chinese only in practice; English consultations were left out of the mix.",
              "- Consultation endings in the training data are templated around the source's own diagnosis and "
              "advice; the model imitates the format even where its assessment is wrong.",
              "", "## Licences of the sources", "",
              "CMExam (Apache-2.0, research use only), Toyhom doctor–patient QA (MIT), CMtMedQA dialogues "
              "(Apache-2.0), COVID-Dialogue (no licence, © haodf.com, research use), medical knowledge graph "
              "(QASystemOnMedicalKG re-crawl, 请勿商用: no commercial use), BELLE / Alpaca-derived general "
              "instructions (research only, CC BY-NC), CValues and Flames safety prompts (Apache-2.0). "
              "The base model is Apache-2.0.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="export a ming LoRA run as the packaged MING-lite adapter")
    ap.add_argument("--train", required=True, help="the `ming train` output folder")
    ap.add_argument("--data", required=True, help="the `ming data build` output folder it trained on")
    ap.add_argument("--compare", default=None, help="Markdown of `ming eval compare base lite` for the card")
    ap.add_argument("--out", default=str(ADAPTER_DIR), help="where the adapter goes (default: the package)")
    a = ap.parse_args(argv)
    train_dir, data_dir, out = Path(a.train), Path(a.data), Path(a.out)
    try:
        info = export_adapter(train_dir, out)
        cmp_md = Path(a.compare).read_text(encoding="utf-8") if a.compare and Path(a.compare).is_file() else None
        (out / "MODEL_CARD.md").write_text(model_card(train_dir, data_dir, info, cmp_md), encoding="utf-8")
    except MingError as exc:
        print(f"ming.models.lite_export: {exc}", file=sys.stderr)
        return 2
    print(f"[ming] MING-lite adapter: {out} ({info['bytes'] / 1e6:.1f} MB, {info['params'] / 1e6:.2f}M params)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
