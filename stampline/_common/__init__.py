"""The leaf package: what every component needs. It imports nothing of stampline's, and
anything may import it (DESIGN.md, "Layout").
"""

from stampline._common._errors import StamplineError
from stampline._common._namespace import imported_as_part_of_stampline
from stampline._common._shown import (
    MASK,
    control_characters,
    is_secret_param,
    mask_urls,
    url_credentials,
    visible,
)

__all__ = [
    "MASK",
    "StamplineError",
    "control_characters",
    "imported_as_part_of_stampline",
    "is_secret_param",
    "mask_urls",
    "url_credentials",
    "visible",
]
