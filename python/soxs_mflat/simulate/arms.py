"""The simulator's arm facts are the package's instrument facts (soxs_mflat.instruments): the
simulator imports the recipe's module, never the other way round."""
from ..instruments import ARMS, Arm, get_arm

__all__ = ["ARMS", "Arm", "get_arm"]
