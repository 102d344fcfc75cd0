"""`ming data`: build MING's instruction mix from raw sources, and check or convert record files.

    ming data build --recipe default --out runs/data     # the four-part MING mix from ../shared/data
    ming data stats FILE                                   # counts, shares and lengths of a record file
    ming data validate FILE                                # schema problems with file:line; exit 1 if any
    ming data convert --from sharegpt|alpaca IN OUT        # to our JSONL record format
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ming.data.build import build
from ming.data.dist import build_dask
from ming.data.rawio import iter_rows
from ming.data.recipe import load_recipe
from ming.data.records import (ErrorLog, detect_format, from_alpaca, from_sharegpt, iter_records, to_record,
                               validate_record)
from ming.data.report import MixStats


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help_text, description=help_text)
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")

    b = sub.add_parser("build", help="build a mix from a recipe: train.jsonl, dev.jsonl, stats.json, report.md")
    b.add_argument("--recipe", default="default",
                   help="recipe YAML file, or a packaged recipe name (default: %(default)s = MING's proportions)")
    b.add_argument("--out", required=True, help="output folder (created; files in it are overwritten)")
    b.add_argument("--data-dir", default=None,
                   help="folder that relative recipe paths are under (default: recipe's data_dir, MING_DATA_DIR, "
                        "or ../shared/data)")
    b.add_argument("--total", type=int, default=None,
                   help="records in the mix (default: the recipe's; 'auto' there = largest mix the data allows)")
    b.add_argument("--max-error-rate", type=float, default=None,
                   help="fail when more than this fraction of a source's rows is bad input (default: recipe's, 0.01)")
    b.add_argument("--seed", type=int, default=None, help="sampling seed (default: the recipe's)")
    b.add_argument("--dev-fraction", type=float, default=None, help="fraction of the mix written to dev.jsonl")
    b.add_argument("--no-audit", dest="audit", action="store_false",
                   help="skip re-reading the output to count duplicates and eval contamination")
    b.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars on stderr")
    b.add_argument("--workers", type=int, default=None,
                   help="processes for cleaning, hashing and decontamination (default: every core; 1 = none)")
    b.add_argument("--engine", choices=["local", "dask"], default="local",
                   help="local: this machine; dask: the same build as a Dask graph (local cluster, or the one "
                        "--scheduler names; needs `pip install ming[dist]`)")
    b.add_argument("--scheduler", default=None,
                   help="with --engine dask: address of a Dask scheduler (tcp://host:8786); default: a local "
                        "cluster of --workers processes")
    b.set_defaults(data_func=_build)

    s = sub.add_parser("stats", help="counts per category/subset/source, lengths and turns of a record file")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="print the statistics as JSON")
    s.set_defaults(data_func=_stats)

    v = sub.add_parser("validate", help="check a record file (ours, ShareGPT or Alpaca); problems as FILE:LINE")
    v.add_argument("file")
    v.add_argument("--max-shown", type=int, default=50, help="problems printed (all are counted)")
    v.add_argument("--allow-open", action="store_true",
                   help="allow conversations that end with a user turn (prompts for evaluation, not training)")
    v.set_defaults(data_func=_validate)

    c = sub.add_parser("convert", help="convert ShareGPT or Alpaca JSON/JSONL to our JSONL records")
    c.add_argument("--from", dest="fmt", required=True, choices=["sharegpt", "alpaca"], help="input format")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--source", default=None, help="value of 'source' for records without one")
    c.add_argument("--category", default="", choices=["", "knowledge_qa", "multiturn_diagnosis", "instruction",
                                                       "safety"], help="category to set on every record")
    c.set_defaults(data_func=_convert)

    p.set_defaults(func=run, _data_parser=p)
    return p


def run(args) -> int:
    func = getattr(args, "data_func", None)
    if func is None:
        args._data_parser.print_help()
        return 2
    return func(args)


def _build(args) -> int:
    recipe = load_recipe(args.recipe)
    if args.seed is not None:
        recipe.seed = args.seed
    if args.dev_fraction is not None:
        recipe.dev_fraction = args.dev_fraction
    kw = dict(data_dir=args.data_dir, progress=args.progress, max_error_rate=args.max_error_rate,
              total=args.total, audit=args.audit, workers=args.workers)
    if args.engine == "dask":
        res = build_dask(recipe, args.out, scheduler=args.scheduler, **kw)
    else:
        res = build(recipe, args.out, **kw)
    _print_summary(res)
    return 0


def _print_summary(res: dict) -> None:
    mix, plan = res["mix"], res["plan"]
    total = mix["total"] or 1
    print(f"wrote {mix['total']} records to {res['out_dir']} (train {mix['splits'].get('train', 0)}, "
          f"dev {mix['splits'].get('dev', 0)}) in {res['timing']['seconds']} s")
    if plan["auto"]:
        print(f"total chosen automatically, limited by {plan['binding_category']}")
    print(f"{'category':<22}{'target':>9}{'actual':>9}")
    for c, cd in plan["categories"].items():
        print(f"{c:<22}{cd['share'] * 100:>8.2f}%{mix['category'].get(c, 0) / total * 100:>8.2f}%")
    print(f"{'subset':<22}{'target':>8}{'actual':>8}{'available':>11}")
    for name, sp in plan["subsets"].items():
        act = mix["subset"].get(name, 0)
        flag = "  short" if act < sp["nominal"] - 1 else ""
        print(f"{name:<22}{sp['nominal']:>8}{act:>8}{sp['available']:>11}{flag}")
    d, a = res["dedup"], res.get("audit") or {}
    print(f"dropped: exact dups {d['exact_dups']}, near dups {d['near_dups']}, eval-contaminated "
          f"{d['eval_contaminated']}, cleaning {sum(res['cleaning']['drops'].values())}, bad input lines "
          f"{sum(res['input_problems']['errors'].values())}")
    if a:
        print(f"audit: {a['records']} records, schema errors {a['schema_errors']}, exact duplicates "
              f"{a['exact_duplicates']}, eval contamination {a['eval_contaminated']}")
    print(f"report: {res['out_dir']}/report.md")


def _stats(args) -> int:
    errors = ErrorLog()
    st = MixStats()
    for rec in iter_records(args.file, errors=errors, training=False):
        st.add(rec, "all")
    d = st.to_dict()
    d["bad_lines"] = errors.n_errors
    if args.json:
        print(json.dumps(d, ensure_ascii=False, indent=2))
        return 0
    total = d["total"] or 1
    print(f"{args.file}: {d['total']} records ({errors.n_errors} bad lines skipped)")
    for key in ("category", "subset", "source"):
        print(f"\n{key:<28}{'records':>9}{'share':>9}")
        for k, v in sorted(d[key].items(), key=lambda kv: -kv[1])[:30]:
            print(f"{k or '(none)':<28}{v:>9}{v / total * 100:>8.2f}%")
    print(f"\n{'category':<22}{'mean chars':>11}  assistant turns (1/2/3/4/5/6+)")
    for c, h in d["exchanges_histogram"].items():
        turns = "/".join(str(h.get(k, 0)) for k in ("1", "2", "3", "4", "5", "6+"))
        print(f"{c or '(none)':<22}{d['mean_chars'].get(c, 0):>11}  {turns}")
    for e in errors.examples[:10] + [f"warning: {w}" for w in errors.warning_examples[:10]]:
        print(f"  {e}", file=sys.stderr)
    return 0


def _validate(args) -> int:
    errors = ErrorLog(max_examples=args.max_shown)
    n = ok = 0
    for line_no, obj in iter_rows(args.file, errors=errors, encoding="utf-8"):
        n += 1
        try:
            rec = to_record(obj)
        except (ValueError, TypeError, KeyError) as exc:
            errors.error(args.file, line_no, str(exc))
            continue
        problems = validate_record(rec, training=not args.allow_open)
        for p in problems:
            errors.error(args.file, line_no, p)
        ok += not problems
    bad_lines = sum(errors.rows.values()) - ok
    for e in errors.examples:
        print(e)
    print(f"{args.file}: {sum(errors.rows.values())} lines, {ok} valid records, {bad_lines} lines with problems "
          f"({errors.n_errors} problems)")
    return 0 if bad_lines == 0 else 1


def _convert(args) -> int:
    errors = ErrorLog()
    conv = from_sharegpt if args.fmt == "sharegpt" else from_alpaca
    n = 0
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fh:
        for line_no, obj in iter_rows(args.input, errors=errors):
            fmt = detect_format(obj)
            if fmt != args.fmt:
                errors.error(args.input, line_no, f"not {args.fmt} (looks like {fmt or 'an unknown format'})")
                continue
            try:
                rec = conv(obj)
            except (ValueError, TypeError, KeyError) as exc:
                errors.error(args.input, line_no, str(exc))
                continue
            if args.source and rec["source"] == args.fmt:
                rec["source"] = args.source
                rec["id"] = rec["id"].replace(f"{args.fmt}-", f"{args.source}-", 1)
            if args.category:
                rec["category"] = args.category
            problems = validate_record(rec, training=False)
            if problems:
                errors.error(args.input, line_no, "; ".join(problems[:2]))
                continue
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    for e in errors.examples + [f"warning: {w}" for w in errors.warning_examples]:
        print(e, file=sys.stderr)
    print(f"converted {n} records to {args.output}; skipped {errors.n_errors} bad lines")
    return 0
