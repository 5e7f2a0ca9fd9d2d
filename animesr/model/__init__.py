"""The A2N network and its checkpoint names. Imports only torch."""

from animesr.model.a2n import A2N, A2NConfig
from animesr.model.names import from_authors_state_dict, is_authors_state_dict

__all__ = ["A2N", "A2NConfig", "from_authors_state_dict", "is_authors_state_dict"]
