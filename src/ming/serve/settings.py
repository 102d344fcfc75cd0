"""Server settings: one dataclass. `ming serve` generates its server flags from these fields
(`add_flags`), so a setting is declared, defaulted and documented in exactly one place."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ming import envs
from ming.errors import MingError


def _opt(default, help: str, **argparse_kw):
    return field(default=default, metadata={"help": help, **argparse_kw})


@dataclass
class ServeSettings:
    host: str = _opt("127.0.0.1", "address to bind; 0.0.0.0 exposes the server to the network (put it behind "
                                  "TLS and --api-key)")
    port: int = _opt(8000, "TCP port")
    api_key: str | None = _opt(None, "require `Authorization: Bearer KEY` on /v1/* (default: $MING_API_KEY, else no key)")
    log_requests: bool = _opt(False, "log the messages and answers of each request (patient text! off by default: "
                                     "only ids, token counts and timings are logged)")
    max_queue: int = _opt(16, "requests that may wait for the model beyond those being generated; more get "
                              "429 with Retry-After")
    safety: str = _opt("on", "runtime medical safety: emergency triage, report grounding, refusal policy "
                             "(strict: emergencies get only the escalation)", choices=["on", "off", "strict"])
    mode: str = _opt("qa", "default mode when a request names none: qa = 医疗问答, consult = 智能问诊",
                     choices=["qa", "consult"])
    served_model_name: str | None = _opt(None, "model id shown in /v1/models and responses (default: the model's "
                                               "name); requests may use it or any other id")
    shutdown_timeout: float = _opt(5.0, "seconds to let running answers finish on Ctrl-C / SIGTERM before they are "
                                        "cancelled")
    # not flags of their own: the model flags and generation flags shared with `ming chat`
    model: Any = field(default=None, metadata={"flag": False})  # ming.config.ModelOptions; None = embedded default
    generation: Any = field(default=None, metadata={"flag": False})  # GenerationConfig: defaults for requests

    def validate(self) -> "ServeSettings":
        if not 0 < self.port < 65536:
            raise MingError(f"--port must be in 1..65535, got {self.port}")
        if self.max_queue < 0:
            raise MingError(f"--max-queue must be >= 0 (0 = no waiting, only the running request), got {self.max_queue}")
        if self.api_key is not None and not self.api_key.strip():
            raise MingError("--api-key is empty; give a key or leave the flag out")
        return self


def add_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one `--flag` per ServeSettings field (bools become store_true switches)."""
    g = p.add_argument_group("server")
    for f in dataclasses.fields(ServeSettings):
        if f.name in skip or f.metadata.get("flag") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        kw = {k: v for k, v in f.metadata.items() if k not in ("help", "flag")}
        help_text = f.metadata.get("help", "")
        if f.type in (bool, "bool"):
            g.add_argument(flag, dest=f.name, action="store_true", default=f.default, help=help_text)
            continue
        typ = {"int": int, "float": float}.get(str(f.type), str)
        if f.default is not None:
            help_text += " (default %(default)s)"
        g.add_argument(flag, dest=f.name, type=typ, default=f.default, help=help_text, **kw)


def from_args(ns: argparse.Namespace, model: Any = None, generation: Any = None) -> ServeSettings:
    names = {f.name for f in dataclasses.fields(ServeSettings) if f.metadata.get("flag") is not False}
    values = {k: v for k, v in vars(ns).items() if k in names}
    if values.get("api_key") is None:
        values["api_key"] = envs.api_key()  # keeps the key out of `ps`
    return ServeSettings(**values, model=model, generation=generation).validate()
