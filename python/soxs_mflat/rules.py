"""Verification rules of the input contract (data/contract/inputs.yaml): each has an id, an outcome
(the CLI's exit code, the plugin's CPL error code) and a message template that both front ends fill."""
from __future__ import annotations

from .contract import section
from .errors import InputError


class VerificationError(InputError):
    """An input set breaks a rule; ``rule`` names it, the message names the files."""

    def __init__(self, rule: str, message: str):
        if rule not in section("inputs")["rules"]:   # a rule the plugin cannot know has no outcome either
            raise LookupError(f"no rule {rule!r} in the input contract")
        super().__init__(f"[{rule}] {message}")
        self.rule = rule


def rule_error(rule: str, **fields) -> VerificationError:
    """The error of rule ``rule`` with its contract message filled from ``fields``."""
    spec = section("inputs")["rules"][rule]
    return VerificationError(rule, spec["message"].format(**fields))


def outcome(rule: str) -> dict:
    """{cli_exit, cpl_error, esorex_exit} of a rule."""
    c = section("inputs")
    return c["outcomes"][c["rules"][rule]["outcome"]]
