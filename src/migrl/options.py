"""Command-line options generated from a config dataclass, so each option is defined once, with its config.

The convention is ``transformers.HfArgumentParser``'s (a field's ``metadata["help"]``, its type and default;
a bool that defaults to True gives ``--no-<name>``), which sft and grpo use through TRL's parser. The other
commands do not go through HfArgumentParser itself: it imports transformers (0.6-1.3 s on 2 cores), and
``migrl --help`` builds every subcommand's options and must stay well under a second. The flag style is
migrl's (``--batch-size``), with TRL's spelling accepted where migrl and TRL share an option (``--output_dir``).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Callable

_NONE = type(None)


def opt(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None, aliases: tuple[str, ...] = (),
        choices: Any = None, required: bool = False, parse: Callable[[str], Any] | None = None,
        append: bool = False, dest: str | None = None, cli: bool = True) -> Any:
    """A config field with what its command-line option needs: help, the flag (default ``--field-name``),
    other spellings, choices, ``required``, ``parse`` (the string -> value), ``append`` (repeatable, as a
    tuple), ``dest`` (the parsed attribute, where two configs of one command share a field name),
    ``cli=False`` (not an option: set by code)."""
    meta = {"help": help, "flag": flag, "aliases": aliases, "choices": choices, "required": required,
            "parse": parse, "append": append, "dest": dest, "cli": cli}
    if isinstance(default, (list, dict, set)):
        raise TypeError("a mutable default needs default_factory")
    return dataclasses.field(default=default, metadata=meta)


def _base_type(tp: Any) -> Any:
    """``int`` of ``int | None``, and so on."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not _NONE]
        if len(args) == 1:
            return args[0]
    return tp


def add_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), **help_for: str) -> None:
    """One option per field of ``cls`` (those with ``cli`` and not in ``skip``); ``help_for`` replaces a help."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True) or f.name in skip:
            continue
        kind = _base_type(hints[f.name])
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        names = [flag, *meta.get("aliases", ())]
        kwargs: dict[str, Any] = {"dest": meta.get("dest") or f.name, "help": help_for.get(f.name, meta.get("help", ""))}
        if kind is bool:
            if f.default is True:
                names = [meta.get("flag") or "--no-" + f.name.replace("_", "-")]
                kwargs["action"] = "store_false"
            else:
                kwargs["action"] = "store_true"
        elif meta.get("append"):
            kwargs.update(action="append", default=None)
        else:
            kwargs["type"] = meta.get("parse") or (kind if kind in (int, float) else str)
            if meta.get("required"):
                kwargs["required"] = True
            else:
                kwargs["default"] = f.default
            if meta.get("choices") is not None:
                kwargs["choices"] = meta["choices"]
        if not kwargs["help"]:
            del kwargs["help"]
        parser.add_argument(*names, **kwargs)


def from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """``cls`` from the parsed options (those it has; a repeated option as a tuple), ``values`` over them."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        dest = f.metadata.get("dest") or f.name
        if f.name in values or not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if f.metadata.get("append"):
            value = tuple(value) if value else f.default
        kwargs[f.name] = value
    return cls(**{**kwargs, **values})
