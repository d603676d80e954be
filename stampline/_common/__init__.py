"""The leaf package: what every component needs. It imports nothing of stampline's, and
anything may import it (DESIGN.md, "Layout").
"""

from stampline._common._errors import StamplineError
from stampline._common._namespace import imported_as_part_of_stampline

__all__ = ["StamplineError", "imported_as_part_of_stampline"]
