"""The session-15 experiment of docs/serve.md: an 8-row pass in llama.cpp's repacked Q4_K kernel (not shipped).

llama.cpp's x86 `ggml_gemm_q4_K_8x8_q8_K` (ggml-cpu/arch/x86/repack.cpp, llama-cpp-python 0.3.36) unpacks the
weights once per 16 rows of the batch in its main loop and once per 4 rows in its tail, so a batch of 8 sequences
is two passes. This copies each 16-row block (AVX-512 and AVX2) as an 8-row block (2 row groups of 4) placed after it.

    python bench/q4k_8row_patch.py SRC/ggml/src/ggml-cpu/arch/x86/repack.cpp
    # then build libggml-cpu with scripts/install_llamacpp.sh's flags (cmake -G Ninja ... -DGGML_NATIVE=ON
    # -DCMAKE_C_FLAGS/-DCMAKE_CXX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; ninja ggml-cpu), copy the venv's
    # llama_cpp package to SITE, put the built libggml-cpu.so* in SITE/llama_cpp/lib, and run, with and without it,
    # PYTHONPATH=SITE:src .venv/bin/python bench/batch_step.py 1.5b --kernels repacked --batches 1,4,8 --threads 2

Result here (docs/serve.md): the bare 8-token step 0.80-0.90x as long; `bench/serve.py` with 8 clients unchanged.
"""

import re
import sys

HEAD = "    for (; y < anr / 4; y += 4) {\n"


def patch(src: str) -> tuple[str, int]:
    start = src.index("void ggml_gemm_q4_K_8x8_q8_K(")
    end = src.index("\nvoid ", start + 10)
    fn = src[start:end]
    out, pos, n = [], 0, 0
    while (i := fn.find(HEAD, pos)) >= 0:
        j = fn.index("\n    }\n", i) + len("\n    }\n")  # the block's closing brace, at its indentation
        eight = fn[i:j].replace(HEAD, "    for (; y + 2 <= nr / 4; y += 2) {  // 8 rows in one pass\n", 1)
        for old, new in (("for (int i = 0; i < 3; ++i)", "for (int i = 0; i < 1; ++i)"), ("rp < 4", "rp < 2"),
                         ("a_ptrs[4]", "a_ptrs[2]")):
            if eight.count(old) != 1:
                raise SystemExit(f"unexpected source: {old!r} found {eight.count(old)} times in a 16-row block")
            eight = eight.replace(old, new)
        eight, k = re.subn(r"for \(int i = 0; i < 16; i\+\+\) \{(\n\s+_mm(?:256|512)_storeu_ps)",
                           r"for (int i = 0; i < 8; i++) {\1", eight)
        if k != 1:
            raise SystemExit("unexpected source: the 16-row block's store loop was not found once")
        out.append(fn[pos:j] + eight)
        pos, n = j, n + 1
    out.append(fn[pos:])
    return src[:start] + "".join(out) + src[end:], n


if __name__ == "__main__":
    path = sys.argv[1]
    text, n = patch(open(path, encoding="utf-8").read())
    if n != 2:
        raise SystemExit(f"expected 2 16-row blocks (AVX-512, AVX2), found {n}: another llama.cpp version?")
    open(path, "w", encoding="utf-8").write(text)
    print(f"patched {n} blocks in {path}")
