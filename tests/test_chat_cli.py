"""`ming chat` as a user runs it: a real process, driven through a pipe."""

import os
import subprocess
import sys
import time

import pytest

MING = [sys.executable, "-m", "ming"]


def run_ming(args, stdin="", timeout=600, env=None):
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(MING + args, input=stdin, capture_output=True, text=True, timeout=timeout, env=full_env)


def test_help_is_instant_and_imports_no_torch():
    code = "import sys; from ming.cli.main import main; main(['--help']) if False else None; " \
           "from ming.cli import main as m; m.build_parser([]); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"
    t = time.perf_counter()
    r = run_ming(["--help"])
    assert r.returncode == 0 and "chat" in r.stdout and "serve" in r.stdout
    assert time.perf_counter() - t < 30  # generous: only guards against importing torch at start


def test_pipe_multi_turn_with_new_chat(tiny_qwen_dir, tmp_path):
    save = tmp_path / "t.json"
    r = run_ming(["chat", "--model-path", str(tiny_qwen_dir), "--safety", "off", "--max-new-token", "6",
                  "--temperature", "0"],
                 stdin=f"第一个问题\n第二个问题\n/save {save}\nnew chat\n第三个问题\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("明医:") == 3
    assert "new chat" in r.stderr
    assert "本工具由 AI 生成回答" in r.stderr  # the disclaimer is shown at start
    # a random tiny model never ends on its own within 6 tokens: each answer says it was cut at the limit
    assert r.stderr.count("the answer was cut at the length limit (6 new tokens") == 3
    import json

    saved = json.loads(save.read_text())
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["第一个问题", "第二个问题"]


def test_seed_flag_spellings_and_beam(tiny_bloom_dir):
    r = run_ming(["chat", "--model-path", str(tiny_bloom_dir), "--conv-template", "bloom", "--max-new-token", "5",
                  "--beam-size", "3", "--temperature", "0.3", "--safety", "off", "--once", "你好"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("明医:")
    assert "beam search (3 beams) decodes deterministically" in r.stderr


def test_missing_model_is_a_clear_error():
    r = run_ming(["chat", "--model-path", "./no/such/MING-1.8B", "--once", "hi"])
    assert r.returncode == 2
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = run_ming(["chat", "--model-path", "MediaBrain-SJTU/MING-7B", "--once", "hi"])
    assert r.returncode == 2 and "--allow-download" in r.stderr


def test_end_to_end_embedded_model():
    """The real `ming chat` on the embedded model: two Chinese questions, `new chat`, both answered."""
    r = run_ming(["chat", "--max-new-tokens", "24", "--temperature", "0"],
                 stdin="感冒了应该注意什么？\n那发烧呢？\nnew chat\n", timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    answers = [a.strip() for a in r.stdout.split("明医:")[1:]]
    assert len(answers) == 2, r.stdout
    for a in answers:
        assert len(a) >= 4 and any("\u4e00" <= ch <= "\u9fff" for ch in a), a
    assert "new chat" in r.stderr


def test_ctrl_c_stops_the_answer_and_keeps_the_session(tiny_qwen_dir):
    import signal

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen(MING + ["chat", "--model-path", str(tiny_qwen_dir), "--safety", "off", "--max-new-tokens",
                                 "3000", "--temperature", "0", "--context-length", "4096"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        p.stdin.write("一个很长的问题\n")
        p.stdin.flush()
        assert p.stdout.read(4) == "明医: "[:4]
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        p.stdin.write("/exit\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 0, err[-1500:]
    assert "answer stopped (Ctrl-C)" in err


def test_seed_command_lines_with_local_checkpoints(tiny_qwen_dir, tiny_bloom_dir):
    """The three command lines of MING's README, on local (tiny) Qwen2 and Bloom checkpoints."""
    for path, tpl, temp in ((tiny_qwen_dir, "qwen", "0.7"), (tiny_bloom_dir, "bloom", "1.2")):
        r = run_ming(["chat", "--model-path", str(path), "--conv-template", tpl, "--max-new-token", "8",
                      "--beam-size", "3", "--temperature", temp, "--safety", "off"], stdin="你好\n")
        assert r.returncode == 0, r.stderr[-1500:]
        assert r.stdout.count("明医:") == 1


REPORT = (os.path.join(os.path.dirname(__file__), "fixtures", "turn", "report15.txt"))


def test_a_pasted_report_that_overflows_the_window_is_answered(tiny_qwen_dir):
    """Issue 14's case: --context-length 700 --max-new-tokens 200 and a 15-item lab report on one line. The
    question fits alone; with the safety layer's findings text it does not — it is answered anyway (the
    report's normal items shortened), never an error."""
    question = open(REPORT, encoding="utf-8").read().strip()
    r = run_ming(["chat", "--model-path", str(tiny_qwen_dir), "--context-length", "700", "--max-new-tokens", "200",
                  "--temperature", "0", "--plain"], stdin=question + "\n")
    assert r.returncode == 0, r.stderr[-1500:]
    assert "error" not in r.stderr and "context window is" not in r.stderr
    assert "| 项目 |" in r.stdout and "白细胞" in r.stdout  # the findings table, all 15 items
    assert "the pasted report was shortened" in r.stderr and "8 normal item(s)" in r.stderr
    assert "[ming safety] answer: REPORT-FINDINGS" in r.stderr


def test_a_report_overflow_on_the_embedded_gguf_with_llamacpp():
    """The same case on the real embedded model with llama.cpp, which refuses a prompt beyond its window."""
    pytest.importorskip("llama_cpp")
    question = open(REPORT, encoding="utf-8").read().strip()
    r = run_ming(["chat", "--model", "base", "--backend", "llamacpp", "--context-length", "700",
                  "--max-new-tokens", "200", "--temperature", "0", "--plain", "--once", question], timeout=900)
    assert r.returncode == 0, r.stderr[-1500:]
    answer = r.stdout.split("|\n\n", 1)[-1]
    assert "| 项目 |" in r.stdout and any("\u4e00" <= ch <= "\u9fff" for ch in answer)
    assert "the pasted report was shortened" in r.stderr and "context window is" not in r.stderr


def test_consult_mode_asks_escalates_and_why_shows_the_reasoning(tiny_qwen_dir):
    # the two messages, typed into `ming chat --mode consult` (MING_KB: the ten-disease test KB)
    r = run_ming(["chat", "--model-path", str(tiny_qwen_dir), "--mode", "consult", "--max-new-token", "20",
                  "--temperature", "0"], stdin="/why\n我肚子疼两天了\n/why\n在右下腹，按着更疼，有点发烧\n/why\n")
    assert r.returncode == 0, r.stderr
    answers = r.stdout.split("明医:")[1:]
    assert len(answers) == 2
    assert "？" in answers[0] and "阑尾炎" not in answers[0]  # asks before it advises
    assert "阑尾炎" in answers[1] and ("120" in answers[1] or "急诊" in answers[1])  # escalates the second
    assert "还没有问诊记录" in r.stderr  # /why before any turn
    assert "下一步：ask" in r.stderr and "候选（知识库）" in r.stderr and "腹痛" in r.stderr
    assert "下一步：escalate" in r.stderr and "红旗征" in r.stderr
    qa = run_ming(["chat", "--model-path", str(tiny_qwen_dir), "--safety", "off", "--max-new-token", "4"],
                  stdin="头痛\n/why\n")
    assert qa.returncode == 0 and "qa 模式没有问诊记录" in qa.stderr


def test_retrieval_flag_lists_the_sources(tiny_qwen_dir, tmp_path):
    # the tiny KB (10 diseases) has 阑尾炎; "急性阑尾炎有什么症状" scores 9.8 there, under the index's min_score of
    # 10 (on the real KB it finds 知识库·急性阑尾炎: docs/grounding.md), so the question names the main symptom
    kb = os.path.join(os.path.dirname(__file__), "fixtures", "kb_tiny")
    env = {"MING_KB": kb, "MING_HOME": str(tmp_path)}
    question = "转移性右下腹痛是阑尾炎吗"
    r = run_ming(["chat", "--model-path", str(tiny_qwen_dir), "--retrieval", "--max-new-tokens", "4",
                  "--temperature", "0", "--once", question], env=env)
    assert r.returncode == 0, r.stderr
    assert "参考：知识库·阑尾炎" in r.stdout
    r = run_ming(["chat", "--model-path", str(tiny_qwen_dir), "--max-new-tokens", "4", "--temperature", "0",
                  "--once", question], env=env)
    assert r.returncode == 0 and "参考：" not in r.stdout  # off by default
    r = run_ming(["chat", "--model-path", str(tiny_qwen_dir), "--stages-off", "nope", "--once", "hi"], env=env)
    assert r.returncode != 0 and "unknown stage" in r.stderr and "retrieval" in r.stderr
