"""Cross-domain protocols: which datasets train, which one tests.

O = OULU-NPU, C = CASIA-FASD, I = Idiap Replay-Attack, M = MSU-MFSD.
Leave-one-out protocols (ANRL's table) and the limited-source ones of later papers.
"""

from __future__ import annotations

from typing import NamedTuple

from anrl_ray.errors import UserError

DOMAIN_NAMES = {"O": "OULU-NPU", "C": "CASIA-FASD", "I": "Replay-Attack", "M": "MSU-MFSD"}


class Protocol(NamedTuple):
    sources: tuple[str, ...]
    target: str

    def data_needs(self) -> dict[str, list[str]]:
        """Domain -> splits a trial reads (each needs live and spoof rows): sources train + dev, target test."""
        return {**{d: ["train", "dev"] for d in self.sources}, self.target: ["test"]}


PROTOCOLS: dict[str, Protocol] = {
    "OCI_M": Protocol(("O", "C", "I"), "M"),
    "OMI_C": Protocol(("O", "M", "I"), "C"),
    "OCM_I": Protocol(("O", "C", "M"), "I"),
    "ICM_O": Protocol(("I", "C", "M"), "O"),
    "MI_C": Protocol(("M", "I"), "C"),
    "MI_O": Protocol(("M", "I"), "O"),
}


def get_protocol(name: str) -> Protocol:
    """Look a protocol up by name, with a clear error listing the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UserError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
