"""The medical knowledge base (diseases, symptoms, checks, departments, drugs) the consultation
controller reasons over: `ming kb build` indexes a medical_kg-schema folder, `load_kb()` loads it."""

from ming.kb.build import build_index, index_path, kb_source
from ming.kb.store import KB, load_kb
from ming.kb.symptoms import Lexicon, Mention

__all__ = ["KB", "Lexicon", "Mention", "build_index", "index_path", "kb_source", "load_kb"]
